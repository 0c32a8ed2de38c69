// The sealed last-known-good cache under real systemd: cache-demo (tests/e2e/configuration.nix,
// homelab.secrets.cache-demo.cache = { enable; maxAge = 25; reuse = 5; }, deadline 3 s, its own
// Connect port 18183). Units from the real Nix module (the golden file); systemd-creds and the
// host key are the container's own.
import { afterAll, afterEach, beforeAll, expect, it } from "vitest";
import type { FakeConnect } from "../connect/fake-connect.mjs";
import { specOfUnit, type Spec } from "./render-units.js";
import { bootScenario, connectBackendOf, describeE2E, probeFiles, serveConnect, sha256, waitForProbe, type Scenario } from "./scenario.js";
import { demoVault } from "./vault.js";

const name = "cache-demo";
const service = `${name}.service`;
const secrets = `${name}-secrets.service`;
const cacheFile = `/var/lib/homelab-secrets/${name}.cred`;
const marker = `/run/homelab-secrets/cached/${name}`;
const reuse = 5;
const maxAge = 25;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describeE2E("real systemd: the sealed last-known-good cache", () => {
  let s: Scenario;
  let spec: Spec;
  let server: FakeConnect | undefined;
  let port = 0;
  let token = "";
  /** When the last fresh fetch succeeded (host clock; the container shares it). */
  let warmAt = 0;

  beforeAll(async () => {
    s = await bootScenario("cache");
    spec = specOfUnit(s.golden, secrets)!;
    ({ port, token } = connectBackendOf(s, secrets));
  }, 120_000);
  afterEach(async () => {
    await s?.c.cx(["systemctl", "stop", service, secrets], { allowFail: true });
    await s?.c.cx(["systemctl", "reset-failed", service, secrets], { allowFail: true });
    await server?.close();
    server = undefined;
  });
  afterAll(async () => {
    await server?.close();
    await s?.c.teardown();
  }, 60_000);

  const value = demoVault().vaults["Demo"]!.items["connect"]!.fields!["password"]!;
  const serve = async (t = token) => {
    server = await serveConnect(s.c, port, { vault: demoVault(), token: t });
  };
  const down = async () => {
    await server?.close();
    server = undefined;
  };
  const start = () => s.c.cx(["systemctl", "start", service], { allowFail: true, timeoutMs: 60_000 });
  const since = async () => (await s.c.cx(["date", "+%Y-%m-%d %H:%M:%S"])).stdout.trim();
  const messages = async (from: string) => {
    await s.c.syncJournal();
    return (await s.c.journal([secrets], from)).filter((e) => e.message.includes(name));
  };
  const seenPassword = async () => probeFiles(await waitForProbe(s.c, service, name)).get(`${spec.outputDir}/password`)?.sha256;
  /** A fresh start with Connect up: the cache is warm from now. */
  const warm = async () => {
    await serve();
    const r = await start();
    expect(r.code, r.stderr).toBe(0);
    warmAt = Date.now();
    expect(await seenPassword()).toBe(sha256(value));
    await s.c.cx(["systemctl", "stop", service]);
    await s.c.waitForState(secrets, "inactive", 10_000);
    await down();
  };
  const waitPast = async (seconds: number) => {
    const left = warmAt + seconds * 1000 + 500 - Date.now();
    if (left > 0) await sleep(left);
  };
  const exitOf = async () => (await s.c.show(secrets, ["ExecMainStatus"])).ExecMainStatus;

  it("a fresh start seals the values: /var/lib/homelab-secrets root's 0700, the file 0600, no value in any byte of any file", async () => {
    await warm();
    expect((await s.c.cx(["stat", "-c", "%a %u %F", "/var/lib/homelab-secrets"])).stdout.trim()).toBe("700 0 directory");
    expect((await s.c.cx(["stat", "-c", "%a %u", cacheFile])).stdout.trim()).toBe("600 0");
    const files = (await s.c.cx(["find", "/var/lib/homelab-secrets", "-type", "f"])).stdout.trim().split("\n");
    expect(files).toEqual([cacheFile]);
    for (const f of files) {
      const bytes = (await s.c.cx(["cat", f])).out;
      expect(bytes.length).toBeGreaterThan(0);
      for (const needle of [value, "connect-v1", Buffer.from(value).toString("base64")]) {
        expect(bytes.includes(Buffer.from(needle)), `${needle} in ${f}`).toBe(false);
      }
    }
    const grep = await s.c.cx(["grep", "-rlF", "-e", value, "/var/lib/homelab-secrets", "/run/homelab-secrets"], { allowFail: true });
    expect(grep.code, grep.stdout).toBe(1);
  }, 60_000);

  it("a restart within cache.reuse seconds of the fresh fetch asks Connect nothing", async () => {
    await serve();
    const first = await start();
    expect(first.code, first.stderr).toBe(0);
    warmAt = Date.now();
    await waitForProbe(s.c, service, name);
    server!.clearRequests();
    const from = await since();
    const restartAt = Date.now();
    const r = await s.c.cx(["systemctl", "restart", service], { allowFail: true, timeoutMs: 60_000 });
    expect(r.code, r.stderr).toBe(0);
    expect(restartAt - warmAt, "the restart began inside the window (a machine this slow cannot run this test)").toBeLessThan(
      reuse * 1000 - 1000,
    );
    expect(server!.requests).toEqual([]);
    expect(await seenPassword()).toBe(sha256(value));
    const line = (await messages(from)).find((e) => /using cached values from \d+ s ago without asking the backend/.test(e.message));
    expect(line?.priority).toBe(6);
  }, 60_000);

  it("Connect down at a restart: the service starts with the last values, a warning in the journal, a marker doctor lists; past maxAge it fails and the file goes", async () => {
    await warm();
    await waitPast(reuse);
    let from = await since();
    const r = await start();
    expect(r.code, r.stderr).toBe(0);
    expect(await s.c.show(service, ["ActiveState"])).toEqual({ ActiveState: "active" });
    expect(await seenPassword()).toBe(sha256(value));
    const warning = (await messages(from)).find((e) =>
      /using cached values from \d+ s ago \(the backend failed: could not resolve/.test(e.message),
    );
    expect(warning, "a warning line").toBeDefined();
    expect(warning!.priority).toBe(4);
    expect((await s.c.cx(["stat", "-c", "%a", marker])).stdout.trim()).toBe("600");
    expect((await s.c.cx(["cat", marker])).stdout).not.toContain(value);
    const doctor = await s.c.cx(["/opt/homelab-secrets/bin/homelab-secrets", "doctor"], { allowFail: true });
    expect(doctor.stdout).toMatch(new RegExp(`^WARN {4}cached values: ${name} runs on values fetched \\d+ s ago`, "m"));

    // Stopping the service runs cleanup: the marker goes, the sealed file stays.
    await s.c.cx(["systemctl", "stop", service]);
    await s.c.waitForState(secrets, "inactive", 10_000);
    expect((await s.c.cx(["test", "-e", marker], { allowFail: true })).code).not.toBe(0);
    expect((await s.c.cx(["test", "-f", cacheFile], { allowFail: true })).code).toBe(0);

    await waitPast(maxAge);
    from = await since();
    const late = await start();
    expect(late.code).not.toBe(0);
    expect(await exitOf()).toBe("75");
    expect((await messages(from)).map((e) => e.message).join("\n")).toMatch(
      /cached values not used: it is \d+ s old, older than the maximum age of 25 s; removed/,
    );
    expect((await s.c.cx(["test", "-e", cacheFile], { allowFail: true })).code, "removed").not.toBe(0);
    expect(await s.c.show(service, ["ActiveState"])).toEqual({ ActiveState: "inactive" });
  }, 90_000);

  it("a rejected token (401) with a warm cache: the start fails with 77, no cached values", async () => {
    await warm();
    await waitPast(reuse);
    await serve("not-the-token");
    const from = await since();
    const r = await start();
    expect(r.code).not.toBe(0);
    expect(await exitOf()).toBe("77");
    const text = (await messages(from)).map((e) => e.message).join("\n");
    expect(text).toMatch(/not for this one \(exit 77\)/);
    expect(text).not.toMatch(/using cached values/);
    expect(server!.requests.length).toBeGreaterThan(0);
  }, 60_000);

  it("a new host key (/var/lib/systemd/credential.secret replaced): the cache no longer decrypts, the start fails", async () => {
    await warm();
    await waitPast(reuse);
    const before = (await s.c.cx(["sha256sum", "/var/lib/systemd/credential.secret"])).stdout;
    await s.c.cx(["rm", "/var/lib/systemd/credential.secret"]); // the unit's `systemd-creds setup` makes a new one
    const from = await since();
    const r = await start();
    expect(r.code).not.toBe(0);
    expect(await exitOf()).toBe("75");
    expect((await s.c.cx(["sha256sum", "/var/lib/systemd/credential.secret"])).stdout).not.toBe(before);
    expect((await messages(from)).map((e) => e.message).join("\n")).toMatch(
      /cached values not used: \S+cache-demo\.cred does not decrypt for this spec on this host/,
    );
    expect(await s.c.show(service, ["ActiveState"])).toEqual({ ActiveState: "inactive" });
  }, 60_000);

  it("BindPaths= puts a device node into a PrivateDevices= unit's /dev, as the unit does with /dev/tpmrm0 (stand-in: /dev/net/tun; no TPM2 here)", async () => {
    const probe =
      "if [ -c /dev/net/tun ] && exec 3<>/dev/net/tun; then echo open; else echo absent; fi; [ -e /dev/tpmrm0 ] && echo tpm || echo no-tpm";
    const unit = (props: string[]) =>
      s.c.cx(
        ["systemd-run", "--wait", "--pipe", "--quiet", "-p", "PrivateDevices=yes", ...props.flatMap((p) => ["-p", p]), "sh", "-c", probe],
        {
          allowFail: true,
        },
      );
    const bound = await unit([
      "BindPaths=-/dev/net/tun",
      "DeviceAllow=/dev/net/tun rw",
      "BindPaths=-/dev/tpmrm0",
      "DeviceAllow=/dev/tpmrm0 rw",
    ]);
    expect(bound.code, bound.stderr).toBe(0);
    expect(bound.stdout.trim().split("\n")).toEqual(["open", "no-tpm"]);
    const plain = await unit([]);
    expect(plain.stdout.trim().split("\n"), "PrivateDevices= alone hides it").toEqual(["absent", "no-tpm"]);
  }, 60_000);
});
