// Where bookworm's systemd 252 and trixie's 257 really behave differently for what the module
// relies on, pinned per version (documented in tests/e2e/README.md). An unknown version fails:
// observe it and record it here. What must hold everywhere is asserted for every version.
import { afterAll, beforeAll, expect, it } from "vitest";
import { bootScenario, describeE2E, type Scenario } from "./scenario.js";

interface CredentialBehaviour {
  /** filesystem of /run/credentials/<unit> */
  fs: string;
  /** mount options systemd adds beyond ro,nosuid,nodev,noexec */
  extraMountOptions: string[];
  /** `stat` of a DynamicUser unit's credential dir and file, from outside: mode and owner (`uid` = the unit's uid) */
  dynamicDir: string;
  dynamicFile: string;
  /** does that dir and file carry a POSIX ACL (`ls -l` shows `+`), how 257 grants the unit's uid access? */
  dynamicAcl: boolean;
  /** can ExecStartPost= of a DynamicUser unit with a mount namespace read the unit's credential? */
  execStartPostReads: boolean;
}

const recorded: Record<number, CredentialBehaviour> = {
  252: {
    fs: "ramfs",
    extraMountOptions: [],
    dynamicDir: "500 uid:0",
    dynamicFile: "400 uid:0",
    dynamicAcl: false,
    execStartPostReads: false,
  },
  257: {
    fs: "tmpfs",
    extraMountOptions: ["nosymfollow", "noswap"],
    dynamicDir: "550 0:0",
    dynamicFile: "440 0:0",
    dynamicAcl: true,
    execStartPostReads: true,
  },
};

const service = "dynamic-demo.service";
const credDir = `/run/credentials/${service}`;

describeE2E("real systemd: behaviour that differs between systemd versions", () => {
  let s: Scenario;
  let want: CredentialBehaviour;
  beforeAll(async () => {
    s = await bootScenario("versions");
    const r = recorded[s.systemd];
    if (!r) throw new Error(`no recorded behaviour for systemd ${s.systemd}: observe it and add it to tests/e2e/versions.test.ts`);
    want = r;
    const start = await s.c.cx(["systemctl", "start", service], { allowFail: true });
    expect(start.code, start.stderr).toBe(0);
  }, 120_000);
  afterAll(async () => {
    await s?.c.teardown();
  }, 60_000);

  it("a DynamicUser service's credentials: filesystem, mode and owner as recorded; readable by the service's uid and root only", async () => {
    const uid = Number((await s.c.sh('grep ^Uid: "/proc/$(systemctl show -P MainPID "$1")/status" | cut -f2', [service])).stdout.trim());
    expect(uid, "a dynamic uid").toBeGreaterThanOrEqual(61184);
    const mount = (await s.c.sh('grep " $1 " /proc/self/mountinfo', [credDir])).stdout.trim().split(" ");
    const options = mount[5]!.split(",");
    expect({
      fs: mount[mount.indexOf("-") + 1],
      extra: options.filter((o) => !["ro", "nosuid", "nodev", "noexec", "relatime"].includes(o)),
      super: mount
        .at(-1)!
        .split(",")
        .filter((o) => o === "noswap"),
    }).toEqual({
      fs: want.fs,
      extra: want.extraMountOptions.filter((o) => o !== "noswap"),
      super: want.extraMountOptions.filter((o) => o === "noswap"),
    });
    const stat = (await s.c.cx(["stat", "-c", "%a %u:%g", credDir, `${credDir}/op-token`])).stdout.trim().split("\n");
    expect(stat).toEqual([want.dynamicDir, want.dynamicFile].map((x) => x.replace("uid", String(uid))));
    const acl = (await s.c.cx(["ls", "-lnd", credDir, `${credDir}/op-token`])).stdout
      .trim()
      .split("\n")
      .map((l) => l.split(" ")[0]!.endsWith("+"));
    expect(acl).toEqual([want.dynamicAcl, want.dynamicAcl]);

    const as = (u: number | string, g: number | string) =>
      s.c.cx(["setpriv", `--reuid=${u}`, `--regid=${g}`, "--clear-groups", "cat", `${credDir}/op-token`], { allowFail: true });
    expect((await as(uid, uid)).code, "the service's uid reads its token").toBe(0);
    expect((await as("nobody", "nogroup")).code, "another user cannot").not.toBe(0);
    expect((await as("nobody", uid)).code, "nor one in the service's group").not.toBe(0);
  });

  it("ExecStartPost= of a DynamicUser unit with PrivateTmp= reads the unit's credential as recorded", async () => {
    // --pipe connects every command of the unit to our stdout, in order.
    const r = await s.c.cx([
      "systemd-run",
      "--wait",
      "--pipe",
      "-q",
      "-p",
      "Type=oneshot",
      "-p",
      "DynamicUser=yes",
      "-p",
      "PrivateTmp=yes",
      "-p",
      "LoadCredential=x:/etc/hostname",
      "-p",
      `ExecStartPost=/bin/sh -c 'cat "$CREDENTIALS_DIRECTORY/x" >/dev/null 2>&1 && echo post-read || echo post-denied'`,
      "sh",
      "-c",
      'cat "$CREDENTIALS_DIRECTORY/x" >/dev/null && echo main-read',
    ]);
    expect(r.stdout.trim().split("\n")).toEqual(["main-read", want.execStartPostReads ? "post-read" : "post-denied"]);
  });
});
