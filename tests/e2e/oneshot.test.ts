// A timer-driven oneshot consumer (nixpkgs' restic backups are one): its secrets exist for
// its run only. Between runs nothing is left in /run, the secrets unit is not active — so a
// `nixos-rebuild switch` has nothing to restart, and its queued start cannot begin an
// unscheduled run.
import { afterAll, beforeAll, expect, it } from "vitest";
import { specOfUnit, type Spec } from "./render-units.js";
import { bootScenario, describeE2E, probeFiles, sha256, waitForProbe, type Scenario } from "./scenario.js";
import { demoVault, resolveRef } from "./vault.js";

const name = "oneshot-demo";
const service = `${name}.service`;
const secrets = `${name}-secrets.service`;

describeE2E("real systemd: a oneshot consumer's secrets live for its run only", () => {
  let s: Scenario;
  let spec: Spec;
  beforeAll(async () => {
    s = await bootScenario("oneshot");
    spec = specOfUnit(s.golden, secrets)!;
  }, 120_000);
  afterAll(async () => {
    await s?.c.teardown();
  }, 60_000);

  const state = (unit: string) => s.c.show(unit, ["ActiveState", "SubState"]);
  const probeRuns = async () => {
    await s.c.syncJournal();
    const r = await s.c.cx(["journalctl", "-b0", "--no-pager", "-o", "cat", "-u", service], { allowFail: true });
    return r.stdout.split("\n").filter((l) => l === `e2e-probe ${name} ready`).length;
  };

  it("has the secret during the run; when the run ends the secrets unit stops and the files are gone", async () => {
    const start = await s.c.cx(["systemctl", "start", service], { allowFail: true, timeoutMs: 60_000 });
    expect(start.code, start.stderr).toBe(0);
    const files = probeFiles(await waitForProbe(s.c, service, name));
    const want = resolveRef(demoVault(), spec.files!["password"]!.ref);
    expect(files.get(`${spec.outputDir}/password`)?.sha256, "the run saw its secret").toBe(sha256(want));

    expect(await state(service)).toEqual({ ActiveState: "inactive", SubState: "dead" });
    expect(await s.c.waitForState(secrets, "inactive", 10_000), "secrets unit stopped with the run").toBe("inactive");
    const left = await s.c.cx(["test", "-e", spec.outputDir], { allowFail: true });
    expect(left.code, `${spec.outputDir} removed`).not.toBe(0);
    const cred = await s.c.cx(["test", "-e", `/run/credentials/${secrets}`], { allowFail: true });
    expect(cred.code, "credential dir removed").not.toBe(0);
  }, 60_000);

  it("a second run fetches again; nothing runs on its own in between", async () => {
    const runs = await probeRuns();
    await new Promise((r) => setTimeout(r, 1500));
    expect(await probeRuns(), "no unscheduled run").toBe(runs);
    expect((await s.c.cx(["systemctl", "list-jobs", "--no-legend"])).stdout.trim()).toBe("");
    const before = (await s.c.show(secrets, ["InvocationID"])).InvocationID;
    const start = await s.c.cx(["systemctl", "start", service], { allowFail: true, timeoutMs: 60_000 });
    expect(start.code, start.stderr).toBe(0);
    expect((await s.c.show(secrets, ["InvocationID"])).InvocationID).not.toBe(before);
    expect(await probeRuns()).toBe(runs + 1);
    expect(await s.c.waitForState(secrets, "inactive", 10_000)).toBe("inactive");
  }, 60_000);

  it("runs the secrets unit without core dumps (LimitCORE=0)", async () => {
    expect(await s.c.show(secrets, ["LimitCORE", "LimitCORESoft"])).toEqual({ LimitCORE: "0", LimitCORESoft: "0" });
  });
});
