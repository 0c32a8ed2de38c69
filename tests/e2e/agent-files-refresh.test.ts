// Refresh with throughAgent (delivery = "files" through the agent), as the Nix module generates
// it (tests/golden/units.json from tests/e2e/configuration.nix): agentfilesrefresh-demo-secrets
// installs two files the agent served; agentfilesrefresh-demo-secrets-refresh.service loads the
// same outputs fresh (the agent's 300 s memory cache bypassed), runs refresh --from-credentials,
// and rewrites the files and restarts the service only when one changed.
import { afterAll, beforeAll, expect, it } from "vitest";
import { bootScenario, describeE2E, waitForProbe, type Scenario } from "./scenario.js";
import { demoVault } from "./vault.js";

const service = "agentfilesrefresh-demo.service";
const secrets = "agentfilesrefresh-demo-secrets.service";
const refresh = "agentfilesrefresh-demo-secrets-refresh.service";
const dir = "/run/agentfilesrefresh-demo-secrets";

describeE2E("real systemd: refresh of a throughAgent files service", () => {
  let s: Scenario;
  beforeAll(async () => {
    s = await bootScenario("agent-files-refresh");
  }, 120_000);
  afterAll(async () => {
    await s?.c.teardown();
  }, 60_000);

  const invocation = async (unit = service) => (await s.c.show(unit, ["InvocationID"])).InvocationID!;
  const readyCount = async () =>
    (await s.c.journal([service])).filter((e) => e.message === "e2e-probe agentfilesrefresh-demo ready").length;
  const agentLog = async () => (await s.c.journal(["homelab-secrets-agent.service"])).map((e) => e.message).join("\n");
  const refreshLog = async () => (await s.c.journal([refresh])).map((e) => e.message).join("\n");
  const freshBatches = async () =>
    (await agentLog()).match(
      /agentfilesrefresh-demo-secrets-refresh\.service: credential \S+: a refresh: 2 reference\(s\) fresh from the backend/g,
    )?.length ?? 0;
  const runRefresh = async () => {
    const run = await s.c.cx(["systemctl", "start", refresh], { allowFail: true });
    return { code: run.code, why: `${run.stderr}\n${await refreshLog()}\n${await agentLog()}` };
  };
  /** "<inode> <uid> <mode>" and the content of each file. */
  const files = async () =>
    (await s.c.sh('for f in "$1"/password "$1"/refresh.env; do stat -c "%n %i %u %a" "$f"; cat "$f"; echo; done', [dir])).stdout;

  it("the service not running: the refresh unit is skipped (its condition), nothing asked of the agent", async () => {
    const run = await runRefresh();
    expect(run.code, run.why).toBe(0);
    expect((await s.c.show(refresh, ["ConditionResult"])).ConditionResult).toBe("no");
    expect(await freshBatches()).toBe(0);
  });

  it("unchanged → nothing written, no restart; rotated → files rewritten, restarted exactly once", async () => {
    const start = await s.c.cx(["systemctl", "start", service], { allowFail: true });
    expect(start.code, `${start.stderr}\n${await agentLog()}`).toBe(0);
    await waitForProbe(s.c, service, "agentfilesrefresh-demo");
    const first = await invocation();
    const secretsRun = await invocation(secrets);
    const before = await files();
    expect(before).toContain("dynamic-v1");

    let run = await runRefresh();
    expect(run.code, run.why).toBe(0);
    expect(await freshBatches(), "one fresh batch for the load of both outputs").toBe(1);
    expect(await refreshLog()).toMatch(/agentfilesrefresh-demo: unchanged \(2 file\(s\) from the credential agent\); nothing written/);
    expect(await files(), "same inodes, same bytes").toBe(before);
    expect(await invocation()).toBe(first);

    await s.setVault(demoVault({ dynamic: "dynamic-v2 rotated" }));
    run = await runRefresh();
    expect(run.code, run.why).toBe(0);
    expect(await freshBatches()).toBe(2);
    const after = await files();
    expect(after).toContain("dynamic-v2 rotated");
    expect(after).not.toContain("dynamic-v1");
    expect(await refreshLog()).toMatch(/agentfilesrefresh-demo: changed: password \(content\)/);
    await waitForProbe(s.c, service, "agentfilesrefresh-demo");
    expect(await invocation(), "restarted").not.toBe(first);
    expect(await readyCount(), "exactly one restart: two starts in all").toBe(2);
    expect(await invocation(secrets), "its -secrets unit was not re-run").toBe(secretsRun);
    const owner = /\/password \d+ (\d+) (\d+)/.exec(after)!;
    expect(owner[2], "the spec's mode").toBe("400");
    expect(owner[1]).toBe((await s.c.cx(["id", "-u", "static-demo"])).stdout.trim());

    const all = `${await refreshLog()}\n${await agentLog()}\n${(await s.c.journal([service, secrets])).map((e) => e.message).join("\n")}`;
    for (const value of ["dynamic-v1", "dynamic-v2 rotated"]) expect(all, "no value in the journal").not.toContain(value);
  });
});
