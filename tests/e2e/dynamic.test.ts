// A DynamicUser=yes service fetching its secret in ExecStartPre= (fetchSecretFile).
import { afterAll, beforeAll, expect, it } from "vitest";
import { bootScenario, describeE2E, probeFiles, sha256, waitForProbe, type Scenario } from "./scenario.js";
import { demoVault } from "./vault.js";

const name = "dynamic-demo";
const service = `${name}.service`;

describeE2E("real systemd: DynamicUser service with fetchSecretFile", () => {
  let s: Scenario;
  beforeAll(async () => {
    s = await bootScenario("dynamic");
  }, 120_000);
  afterAll(async () => {
    await s?.c.teardown();
  }, 60_000);

  async function startAndProbe(value: string) {
    const start = await s.c.cx(["systemctl", "restart", service], { allowFail: true });
    expect(start.code, `${start.stderr}\n${(await s.c.cx(["journalctl", "-b0", "-u", service, "-o", "cat", "-n", "30"])).stdout}`).toBe(0);
    const lines = await waitForProbe(s.c, service, name);
    const uid = Number(lines.find((l) => l.startsWith("id "))!.match(/uid=(\d+)/)![1]);
    const files = [...probeFiles(lines).entries()];
    expect(files.length, "the probe found the fetched file").toBeGreaterThan(0);
    expect(files.map(([, f]) => f.sha256)).toContain(sha256(value));
    return { uid, files };
  }

  it("fetches as the dynamic uid; the files belong to it and only it can read them", async () => {
    const { uid, files } = await startAndProbe(demoVault().vaults["Demo"]!.items["dynamic"]!.fields!["password"]!);
    expect(uid, "a dynamic uid (61184–65519)").toBeGreaterThanOrEqual(61184);
    expect(uid).toBeLessThanOrEqual(65519);
    for (const [path, f] of files) {
      expect({ path, uid: f.uid, groupOrOtherBits: parseInt(f.mode, 8) & 0o077 }).toEqual({ path, uid, groupOrOtherBits: 0 });
      // Another unprivileged user cannot read it (nobody; and not even a user in its group).
      const other = await s.c.cx(["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups", "cat", path], { allowFail: true });
      expect(other.code, `nobody could read ${path}`).not.toBe(0);
      const sameGroup = await s.c.cx(["setpriv", "--reuid=nobody", `--regid=${f.gid}`, "--clear-groups", "cat", path], { allowFail: true });
      expect(sameGroup.code, `a member of gid ${f.gid} could read ${path}`).not.toBe(0);
    }
  });

  it("re-fetches on restart and removes the files on stop", async () => {
    const vault = demoVault({ dynamic: "dynamic-v2 ✓" });
    await s.setVault(vault);
    const { files } = await startAndProbe("dynamic-v2 ✓");
    await s.c.cx(["systemctl", "stop", service]);
    for (const [path] of files) {
      const left = await s.c.cx(["test", "-e", path], { allowFail: true });
      expect(left.code, `${path} survived stop`).not.toBe(0);
    }
  });
});
