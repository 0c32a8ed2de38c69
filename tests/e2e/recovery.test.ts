// Recovery from a transient outage at start ("boot cascade"): the backend is down when the
// service starts, so the fetch fails with 75 and the service's start job fails with result
// `dependency`. Restart= re-runs only the secrets unit; each run first queues a start of the
// service (ExecStartPre=-+systemctl start --no-block --job-mode=fail <service>), which goes
// through once the fetch succeeds. The service must come up with its secret — and that queued
// start must not undo a `systemctl stop` nor start the service twice on `systemctl restart`.
//
// recovery-demo has its own Connect server port (18182) and a 3 s deadline
// (tests/e2e/configuration.nix), so this file can run next to connect.test.ts.
import { afterAll, afterEach, beforeAll, expect, it } from "vitest";
import type { FakeConnect } from "../connect/fake-connect.mjs";
import { specOfUnit, unitValues, type Spec } from "./render-units.js";
import { bootScenario, connectBackendOf, describeE2E, serveConnect, probeFiles, sha256, waitForProbe, type Scenario } from "./scenario.js";
import { demoVault, type Vault } from "./vault.js";

const name = "recovery-demo";
const service = `${name}.service`;
const secrets = `${name}-secrets.service`;

describeE2E("real systemd: recovery after a transient backend outage", () => {
  let s: Scenario;
  let spec: Spec;
  let server: FakeConnect | undefined;
  let port = 0;
  let token = "";
  let deadline = 3;
  let restartSec = 10;

  beforeAll(async () => {
    s = await bootScenario("recovery");
    spec = specOfUnit(s.golden, secrets)!;
    ({ port, token, deadline } = connectBackendOf(s, secrets));
    restartSec = parseInt(unitValues(s.golden, secrets, "Service", "RestartSec")[0]!, 10);
    expect(unitValues(s.golden, secrets, "Service", "ExecStartPre")).toEqual([
      `-+${s.golden.storePaths["systemd"]}/bin/systemctl start --no-block --job-mode=fail ${service}`,
    ]);
  }, 120_000);
  afterEach(async () => {
    await s?.c.cx(["systemctl", "stop", service, secrets], { allowFail: true });
    await server?.close();
    server = undefined;
  });
  afterAll(async () => {
    await server?.close();
    await s?.c.teardown();
  }, 60_000);

  const serve = async (vault: Vault) => {
    server = await serveConnect(s.c, port, { vault, token });
  };
  const value = (vault: Vault) => vault.vaults["Demo"]!.items["connect"]!.fields!["password"]!;
  const state = (unit: string) => s.c.show(unit, ["ActiveState", "SubState"]);
  /** How many times the probe has started in this boot (one "ready" line per run). */
  const probeRuns = async () => {
    await s.c.syncJournal();
    const r = await s.c.cx(["journalctl", "-b0", "--no-pager", "-o", "cat", "-u", service], { allowFail: true });
    return r.stdout.split("\n").filter((l) => l === `e2e-probe ${name} ready`).length;
  };
  const noJobs = async () => (await s.c.cx(["systemctl", "list-jobs", "--no-legend"])).stdout.trim();

  /** `systemctl start` with the backend down: job result `dependency`, fetch exit 75, restart scheduled. */
  async function failToStart(): Promise<number> {
    const start = await s.c.cx(["systemctl", "start", service], { allowFail: true, timeoutMs: (deadline + 30) * 1000 });
    const failedAt = Date.now();
    expect(start.code).not.toBe(0);
    expect(start.stderr).toMatch(/A dependency job for recovery-demo\.service failed/);
    expect(await s.c.show(secrets, ["ActiveState", "SubState", "Result", "ExecMainStatus"])).toEqual({
      ActiveState: "activating",
      SubState: "auto-restart",
      Result: "exit-code",
      ExecMainStatus: "75",
    });
    expect(await state(service)).toEqual({ ActiveState: "inactive", SubState: "dead" });
    return failedAt;
  }

  it("`systemctl stop` while the secrets unit waits to retry cancels the retry", async () => {
    const runs = await probeRuns();
    await failToStart();
    await s.c.cx(["systemctl", "stop", service]);
    expect(await s.c.waitForState(secrets, "inactive", 10_000)).toBe("inactive");
    expect(await state(secrets), "no restart pending").toEqual({ ActiveState: "inactive", SubState: "dead" });
    expect(await noJobs()).toBe("");
    expect(await probeRuns()).toBe(runs);
  }, 60_000);

  it("a transient outage at start: the service comes up with its secret once the retry succeeds", async () => {
    const failedAt = await failToStart();
    const v1 = demoVault();
    await serve(v1);

    // Nobody starts the service again: the secrets unit's own restart must bring it up.
    const seen = await s.c.waitForState(service, "active", (restartSec + 8) * 1000);
    const recoveredAfter = (Date.now() - failedAt) / 1000;
    console.log(`recovered ${recoveredAfter.toFixed(1)} s after the failed start (RestartSec=${restartSec}s)`);
    expect(seen).toBe("active");
    expect(recoveredAfter).toBeGreaterThanOrEqual(restartSec - 1);
    expect(recoveredAfter).toBeLessThan(restartSec + 6);
    expect(await s.c.show(secrets, ["ActiveState", "SubState", "Result", "NRestarts"])).toEqual({
      ActiveState: "active",
      SubState: "exited",
      Result: "success",
      NRestarts: "1",
    });
    const lines = await waitForProbe(s.c, service, name);
    const files = probeFiles(lines);
    expect(files.get(`${spec.outputDir}/password`)?.sha256, "the service saw its secret at start").toBe(sha256(value(v1)));
    expect(await probeRuns()).toBe(1);

    // `systemctl restart`: PartOf= re-runs the fetch (new value); the start the secrets unit
    // queues merges into the restart job: one new run, no second one, nothing left queued.
    await server!.close();
    const v2 = demoVault({ connect: "connect-v2 after restart" });
    await serve(v2);
    const before = (await s.c.show(service, ["InvocationID"])).InvocationID;
    const restart = await s.c.cx(["systemctl", "restart", service], { allowFail: true });
    expect(restart.code, restart.stderr).toBe(0);
    const after = (await s.c.show(service, ["InvocationID"])).InvocationID;
    expect(after).not.toBe(before);
    expect(probeFiles(await waitForProbe(s.c, service, name)).get(`${spec.outputDir}/password`)?.sha256).toBe(sha256(value(v2)));
    await new Promise((r) => setTimeout(r, 1000));
    expect(await noJobs()).toBe("");
    expect((await s.c.show(service, ["InvocationID"])).InvocationID, "no second start").toBe(after);
    expect(await probeRuns()).toBe(2);

    // `systemctl stop`: both inactive, the secrets gone, and it stays that way.
    await s.c.cx(["systemctl", "stop", service]);
    expect(await state(service)).toEqual({ ActiveState: "inactive", SubState: "dead" });
    // `systemctl stop` waits for the service's job only; the secrets unit's ExecStop= may still run.
    expect(await s.c.waitForState(secrets, "inactive", 10_000)).toBe("inactive");
    expect(await state(secrets)).toEqual({ ActiveState: "inactive", SubState: "dead" });
    expect((await s.c.cx(["test", "-e", spec.outputDir], { allowFail: true })).code, `${spec.outputDir} removed`).not.toBe(0);
    await new Promise((r) => setTimeout(r, 1000));
    expect(await noJobs()).toBe("");
    expect(await state(service)).toEqual({ ActiveState: "inactive", SubState: "dead" });
    expect(await probeRuns()).toBe(2);
  }, 90_000);
});
