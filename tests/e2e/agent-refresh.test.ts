// Refresh for delivery = "credentials", as the Nix module generates it (tests/golden/units.json
// from tests/e2e/configuration.nix): agentrefresh-demo (DynamicUser=) gets two credentials
// from the agent; agentrefresh-demo-secrets-refresh.service loads the same two, fresh (the
// agent's 300 s memory cache bypassed), and restarts the service only when one differs.
import { afterAll, beforeAll, expect, it } from "vitest";
import { bootScenario, describeE2E, waitForProbe, type Scenario } from "./scenario.js";
import { demoVault } from "./vault.js";

const service = "agentrefresh-demo.service";
const refresh = "agentrefresh-demo-secrets-refresh.service";
const dir = "/run/credentials/agentrefresh-demo.service";

describeE2E('real systemd: refresh of a delivery = "credentials" service through the agent', () => {
  let s: Scenario;
  beforeAll(async () => {
    s = await bootScenario("agent-refresh");
  }, 120_000);
  afterAll(async () => {
    await s?.c.teardown();
  }, 60_000);

  const invocation = async () => (await s.c.show(service, ["InvocationID"])).InvocationID!;
  const readyCount = async () => (await s.c.journal([service])).filter((e) => e.message === "e2e-probe agentrefresh-demo ready").length;
  const agentLog = async () => (await s.c.journal(["homelab-secrets-agent.service"])).map((e) => e.message).join("\n");
  const refreshLog = async () => (await s.c.journal([refresh])).map((e) => e.message).join("\n");
  const freshBatches = async () =>
    (await agentLog()).match(
      /agentrefresh-demo-secrets-refresh\.service: credential \S+: a refresh: 2 reference\(s\) fresh from the backend/g,
    )?.length ?? 0;
  const runRefresh = async () => {
    const run = await s.c.cx(["systemctl", "start", refresh], { allowFail: true });
    return { code: run.code, why: `${run.stderr}\n${await refreshLog()}\n${await agentLog()}` };
  };

  it("the service not running: the refresh unit is skipped (its condition), nothing asked of the agent", async () => {
    const run = await runRefresh();
    expect(run.code, run.why).toBe(0);
    expect((await s.c.show(refresh, ["ConditionResult"])).ConditionResult).toBe("no");
    expect(await freshBatches()).toBe(0);
  });

  it("unchanged → no restart; rotated → restarted exactly once with the new value; backend failing → refresh fails, service untouched", async () => {
    const start = await s.c.cx(["systemctl", "start", service], { allowFail: true });
    expect(start.code, `${start.stderr}\n${await agentLog()}`).toBe(0);
    await waitForProbe(s.c, service, "agentrefresh-demo");
    const first = await invocation();
    const password = async () => (await s.c.cx(["cat", `${dir}/password`])).stdout;
    expect(await password()).toBe("dynamic-v1");

    // Unchanged: the refresh asks the backend (one batch for both IDs) and leaves the service alone.
    let run = await runRefresh();
    expect(run.code, run.why).toBe(0);
    expect(await invocation()).toBe(first);
    expect(await freshBatches(), "one fresh batch for the load of both IDs").toBe(1);
    expect(await refreshLog()).toMatch(/agentrefresh-demo\.service: 2 credential\(s\) unchanged; nothing restarted/);

    // Rotated in the vault, still within the agent's TTL: the refresh sees it, restarts once.
    await s.setVault(demoVault({ dynamic: "dynamic-v2 rotated" }));
    run = await runRefresh();
    expect(run.code, run.why).toBe(0);
    const second = await invocation();
    expect(second, "restarted").not.toBe(first);
    expect(await readyCount(), "exactly one restart: two starts in all").toBe(2);
    expect(await password(), "the restart loaded the new value (from the agent's updated memory)").toBe("dynamic-v2 rotated");
    expect(await freshBatches()).toBe(2);
    expect(await refreshLog()).toMatch(/agentrefresh-demo\.service: credential\(s\) changed: password; restarting it/);

    // The backend failing (the vault unreadable for the agent), with a newer value behind it:
    // the refresh unit fails, the service keeps running on what it has.
    await s.setVault(demoVault({ dynamic: "dynamic-v3 never seen" }));
    await s.c.cx(["chmod", "0600", "/etc/homelab-secrets/vault.json"]);
    run = await runRefresh();
    expect(run.code, run.why).not.toBe(0);
    expect((await s.c.show(refresh, ["Result"])).Result).not.toBe("success");
    expect(await invocation(), "untouched").toBe(second);
    expect(await readyCount()).toBe(2);
    expect(await password()).toBe("dynamic-v2 rotated");
    // The agent refuses the load: systemd (252 and 257) fails the unit before its command runs.
    // (An agent that closed without answering leaves an empty file: the command refuses that, 75.)
    expect(await refreshLog()).toMatch(/Failed at step CREDENTIALS[^\n]*\n[^\n]*status=243\/CREDENTIALS/);

    const all = `${await refreshLog()}\n${await agentLog()}\n${(await s.c.journal([service])).map((e) => e.message).join("\n")}`;
    for (const value of ["dynamic-v1", "dynamic-v2 rotated", "dynamic-v3 never seen"])
      expect(all, "no value in the journal").not.toContain(value);
  });
});
