import { describe, expect, it } from "vitest";
import { checkPeer, isCredentialId, isUnitName, parsePeerAddress, unitOfCgroup } from "../../helper/src/agent/peer.js";

const addr = (text: string) => Buffer.concat([Buffer.from([0]), Buffer.from(text, "latin1")]);

describe("agent peer address", () => {
  it("parses systemd's \\0<random>/unit/<unit>/<ID>, template instances and odd but legal names included", () => {
    expect(parsePeerAddress(addr("4fa3c1d2e5b60789/unit/foo.service/db-password"))).toEqual({
      unit: "foo.service",
      credential: "db-password",
    });
    expect(parsePeerAddress(addr("0a/unit/foo@bar.service/env"))).toEqual({ unit: "foo@bar.service", credential: "env" });
    // systemd-escape output and instances holding "@" and ":" are legal unit names.
    expect(parsePeerAddress(addr("0a/unit/getty@tty1.service/x"))).toEqual({ unit: "getty@tty1.service", credential: "x" });
    expect(parsePeerAddress(addr("0a/unit/dev-disk-by\\x2duuid-1234.swap/k"))).toEqual({
      unit: "dev-disk-by\\x2duuid-1234.swap",
      credential: "k",
    });
    expect(parsePeerAddress(addr("0a/unit/a@b@c:d.service/k"))).toEqual({ unit: "a@b@c:d.service", credential: "k" });
    expect(parsePeerAddress(addr("0a/unit/x.socket/with space.and+sign"))).toEqual({ unit: "x.socket", credential: "with space.and+sign" });
  });

  it("refuses what systemd never sends", () => {
    const refused = [
      Buffer.from("/run/some/path/socket"), // a filesystem address
      Buffer.from([0]), // unnamed
      addr("0a/unit/foo.service"), // no ID
      addr("0a/unit/foo.service/a/b"), // ID with "/"
      addr("0a/units/foo.service/x"),
      addr("xyz/unit/foo.service/x"), // not hex
      addr("/unit/foo.service/x"), // no random part
      addr("0a/unit/foo.target/x"), // no exec context
      addr("0a/unit/foo@.service/x"), // a template cannot run
      addr("0a/unit/@bar.service/x"),
      addr("0a/unit/foo bar.service/x"),
      addr("0a/unit/foo.service/a:b"), // ":" is not allowed in a credential name
      addr("0a/unit/foo.service/.."),
      Buffer.concat([addr("0a/unit/foo.service/x"), Buffer.from([0, 0x41])]), // an embedded NUL
      addr(`0a/unit/${"a".repeat(250)}.service/x`), // longer than a unit name may be
    ];
    for (const a of refused) expect(typeof parsePeerAddress(a), JSON.stringify(a.toString("latin1"))).toBe("string");
  });

  it("unit and credential name rules", () => {
    expect(isUnitName("a.service")).toBe(true);
    expect(isUnitName("a.mount")).toBe(true);
    expect(isUnitName(".service")).toBe(false);
    expect(isUnitName("a.slice")).toBe(false);
    expect(isUnitName("a/b.service")).toBe(false);
    expect(isCredentialId("op-token")).toBe(true);
    expect(isCredentialId("")).toBe(false);
    expect(isCredentialId("a\nb")).toBe(false);
  });
});

describe("agent peer cgroup", () => {
  it("names the unit only when the cgroup is slices then exactly that unit", () => {
    expect(unitOfCgroup("0::/system.slice/foo.service\n")).toBe("foo.service");
    expect(unitOfCgroup("0::/system.slice/system-foo.slice/foo@bar.service\n")).toBe("foo@bar.service");
    expect(unitOfCgroup("12:pids:/x\n0::/system.slice/foo.service\n")).toBe("foo.service");
    expect(unitOfCgroup("0::/system.slice/bar.service/foo.service\n"), "a unit's own subtree cannot pose as another unit").toBeUndefined();
    expect(unitOfCgroup("0::/foo.service\n"), "Slice=-.slice: a unit in the root slice").toBe("foo.service");
    expect(unitOfCgroup("0::/system.slice/.slice/foo.service\n")).toBeUndefined();
    expect(unitOfCgroup("0::/init.scope\n")).toBeUndefined();
    expect(unitOfCgroup("0::/user.slice/user-0.slice/session-3.scope\n")).toBeUndefined();
    expect(unitOfCgroup("1:name=systemd:/system.slice/foo.service\n"), "cgroup v1 lines are not read").toBeUndefined();
    expect(unitOfCgroup("")).toBeUndefined();
  });

  it("checkPeer: root, from the cgroup of the unit its address names", () => {
    const address = addr("0a/unit/foo.service/secret");
    const cgroup = "0::/system.slice/foo.service\n";
    expect(checkPeer({ uid: 0, pid: 9, address, cgroup })).toEqual({ ok: true, unit: "foo.service", credential: "secret" });
    const notRoot = checkPeer({ uid: 1000, pid: 9, address, cgroup });
    expect(notRoot).toMatchObject({ ok: false, unit: "foo.service", credential: "secret" });
    expect(!notRoot.ok && notRoot.reason).toMatch(/uid 1000, not root/);
    const elsewhere = checkPeer({ uid: 0, pid: 9, address, cgroup: "0::/system.slice/bar.service\n" });
    expect(!elsewhere.ok && elsewhere.reason).toMatch(/in unit bar\.service, not foo\.service/);
    const session = checkPeer({ uid: 0, pid: 9, address, cgroup: "0::/user.slice/user-0.slice/session-1.scope\n" });
    expect(!session.ok && session.reason).toMatch(/no unit's cgroup/);
  });
});
