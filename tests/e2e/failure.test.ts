// Failures: a missing item fails the secrets unit within its deadline with a journal line
// naming the reference, the service does not start, and old files are never half-replaced.
import { afterAll, beforeAll, expect, it } from "vitest";
import { deadlineOf, mapStorePaths, specOfUnit, unitValues } from "./render-units.js";
import { bootScenario, describeE2E, sha256, type Scenario } from "./scenario.js";
import { demoVault } from "./vault.js";

describeE2E("real systemd: failing fetches", () => {
  let s: Scenario;
  beforeAll(async () => {
    s = await bootScenario("failure");
  }, 120_000);
  afterAll(async () => {
    await s?.c.teardown();
  }, 60_000);

  it("a missing item: secrets unit fails in time, names the reference, the service does not start", async () => {
    const name = "missing-demo";
    const secrets = `${name}-secrets.service`;
    const missingRef = "op://Demo/missing/password";
    const deadline = deadlineOf(s.golden, secrets);
    const t0 = Date.now();
    const start = await s.c.cx(["systemctl", "start", `${name}.service`], { allowFail: true, timeoutMs: (deadline + 30) * 1000 });
    const elapsed = (Date.now() - t0) / 1000;
    expect(start.code).not.toBe(0);
    expect(start.stderr, "job result: dependency").toMatch(/A dependency job for missing-demo\.service failed/);
    expect(elapsed, `failed within its --deadline ${deadline}s`).toBeLessThan(deadline);

    const unit = await s.c.show(secrets, ["ActiveState", "Result", "ExecMainStatus"]);
    expect(unit).toEqual({ ActiveState: "failed", Result: "exit-code", ExecMainStatus: "69" });
    const app = await s.c.show(`${name}.service`, ["ActiveState", "ExecMainStartTimestampMonotonic", "InvocationID"]);
    expect(app, "the service never ran").toEqual({ ActiveState: "inactive", ExecMainStartTimestampMonotonic: "0", InvocationID: "" });

    await s.c.syncJournal();
    const journal = await s.c.journal([secrets]);
    const errors = journal.filter((e) => e.priority <= 3 && e.message.includes(missingRef));
    console.log(`journal of ${secrets}:\n${journal.map((e) => `  <${e.priority}> ${e.message}`).join("\n")}`);
    expect(errors.length, `an error-level journal line naming ${missingRef}`).toBeGreaterThan(0);
  });

  it("a failed re-fetch leaves the previous run's files exactly as they were", async () => {
    const name = "static-demo";
    const secrets = `${name}-secrets.service`;
    const spec = specOfUnit(s.golden, secrets)!;
    expect((await s.c.cx(["systemctl", "start", `${name}.service`], { allowFail: true })).code).toBe(0);
    const snapshot = async () =>
      (
        await s.c.sh(
          'cd "$1" && for f in * .[!.]*; do [ -e "$f" ] && printf "%s %s\\n" "$(stat -c "%n %i %a %u %g %Y" "$f")" "$(sha256sum <"$f" | cut -c1-64)"; done; true',
          [spec.outputDir],
        )
      ).stdout;
    const before = await snapshot();
    expect(before).toContain(sha256(demoVault().vaults["Demo"]!.items["static"]!.fields!["password"]!));

    // New value for one reference, another one gone: nothing may be written.
    const vault = demoVault({ static: "must-never-be-written" });
    delete vault.vaults["Demo"]!.items["nasty"]!.fields!["n3"];
    await s.setVault(vault);
    // Run the unit's own fetch command again, with its credential, in a transient unit.
    const execStart = mapStorePaths(unitValues(s.golden, secrets, "Service", "ExecStart")[0]!, s.golden);
    const creds = unitValues(s.golden, secrets, "Service", "LoadCredential").map((c) => `--property=LoadCredential=${c}`);
    const rerun = await s.c.cx(["systemd-run", "--quiet", "--wait", "--pipe", "--collect", ...creds, ...execStart.split(/\s+/)], {
      allowFail: true,
    });
    expect(rerun.code, rerun.stderr).toBe(69);
    expect(rerun.stderr).toContain("op://Demo/nasty/n3");
    expect(await snapshot(), "files untouched (same inode, mode, owner, mtime, content)").toBe(before);
    const stray = await s.c.sh('ls -A "$1"', [spec.outputDir]);
    expect(stray.stdout.split("\n").filter(Boolean).sort()).toEqual(
      before
        .split("\n")
        .filter(Boolean)
        .map((l) => l.split(" ")[0])
        .sort(),
    );
  });
});
