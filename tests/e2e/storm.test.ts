// Boot storm: 20 secrets units started at once all complete, and with --serialize their
// fetches never overlap — proven from the helper's own "acquired/released lock" journal lines.
import { afterAll, beforeAll, expect, it } from "vitest";
import { mapStorePaths, unitValues } from "./render-units.js";
import { bootScenario, describeE2E, probeFiles, sha256, waitForProbe, type Scenario } from "./scenario.js";
import { demoVault, type Vault } from "./vault.js";

const names = Array.from({ length: 20 }, (_, i) => `storm-${String(i + 1).padStart(2, "0")}`);

/**
 * A vault padded with ~16 MB of filler, so each fetch (which reads and parses the vault while
 * holding the lock) takes long enough that an overlap could not hide in timestamp jitter.
 */
function paddedVault(): Vault {
  const vault = demoVault();
  const items: Vault["vaults"][string]["items"] = {};
  for (let i = 0; i < 4000; i++) items[`filler-${i}`] = { fields: { blob: "x".repeat(4000) } };
  vault.vaults["Filler"] = { items };
  return vault;
}

describeE2E("real systemd: boot storm of 20 secrets units", () => {
  let s: Scenario;
  beforeAll(async () => {
    s = await bootScenario("storm", paddedVault());
  }, 120_000);
  afterAll(async () => {
    await s?.c.teardown();
  }, 60_000);

  it("all 20 complete, and with --serialize no two fetches overlap", async () => {
    const serialized = names.filter((n) =>
      unitValues(s.golden, `${n}-secrets.service`, "Service", "ExecStart").join(" ").includes("--serialize"),
    );
    expect(serialized, "the golden storm units use --serialize").toEqual(names);

    const t0 = Date.now();
    const start = await s.c.cx(["systemctl", "start", ...names.map((n) => `${n}.service`)], { allowFail: true, timeoutMs: 180_000 });
    const seconds = (Date.now() - t0) / 1000;
    expect(start.code, start.stderr).toBe(0);
    for (const n of names) {
      const files = probeFiles(await waitForProbe(s.c, `${n}.service`, n));
      expect(
        [...files.values()].map((f) => f.sha256),
        `${n} got its secret`,
      ).toContain(sha256("storm-password"));
    }

    await s.c.syncJournal();
    const journal = await s.c.journal(names.map((n) => `${n}-secrets.service`));
    const events = journal
      .filter((e) => /^(acquired|released) (fetch )?lock\b/.test(e.message))
      .map((e) => ({
        unit: e.unit.replace(/-secrets\.service$/, ""),
        kind: e.message.startsWith("acquired") ? "acquired" : "released",
        us: e.realtimeUs,
      }));
    expect(events.length, 'the helper logs "acquired lock"/"released lock" for every fetch').toBe(2 * names.length);

    const intervals = names
      .map((n) => {
        const a = events.find((e) => e.unit === n && e.kind === "acquired");
        const r = events.find((e) => e.unit === n && e.kind === "released");
        expect(a && r, `${n} acquired and released the lock`).toBeTruthy();
        return { unit: n, from: a!.us, to: r!.us };
      })
      .sort((x, y) => (x.from < y.from ? -1 : 1));
    const first = intervals[0]!.from;
    const rows = intervals.map((iv, i) => ({
      unit: iv.unit,
      "lock held from (ms)": Number(iv.from - first) / 1000,
      "to (ms)": Number(iv.to - first) / 1000,
      "gap after previous (ms)": i === 0 ? null : Number(iv.from - intervals[i - 1]!.to) / 1000,
    }));
    console.log(
      `boot storm: ${names.length} units started by one systemctl call, done in ${seconds.toFixed(1)} s; lock intervals from the journal:`,
    );
    console.table(rows);
    // Each holder released before the next one acquired: the sorted intervals do not overlap.
    // 5 ms of slack: journald stamps lines on receipt, not when they were written. One fetch of
    // the padded vault holds the lock far longer, so a real overlap cannot hide in it.
    const heldMs = intervals.map((iv) => Number(iv.to - iv.from) / 1000);
    console.log(`lock held per fetch: min ${Math.min(...heldMs).toFixed(1)} ms, max ${Math.max(...heldMs).toFixed(1)} ms`);
    const overlaps = intervals.slice(1).flatMap((iv, i) => {
      const overlapMs = Number(intervals[i]!.to - iv.from) / 1000;
      return overlapMs >= 5 ? [`${iv.unit} acquired ${overlapMs} ms before ${intervals[i]!.unit} released`] : [];
    });
    if (overlaps.length > 0) {
      const lockLines = journal
        .filter((e) => /lock/.test(e.message))
        .map((e) => `${Number(e.realtimeUs - first) / 1000} ms ${e.unit} [${e.pid}] <${e.priority}> ${e.message}`);
      console.log(`lock events in journal order:\n${lockLines.join("\n")}`);
    }
    expect(overlaps, "fetches that overlapped").toEqual([]);
    expect(Math.min(...heldMs), "fetches are long enough for the overlap check to mean something").toBeGreaterThan(20);
  }, 240_000);

  it("control: the same 20 fetches without --serialize do overlap (so the check above can see one)", async () => {
    const execStart = mapStorePaths(unitValues(s.golden, "storm-01-secrets.service", "Service", "ExecStart")[0]!, s.golden);
    const argv = execStart.split(" ").filter((a) => a !== "--serialize");
    const script = names
      .map(
        (_, i) =>
          `systemd-run --wait --quiet --unit=control-${i} -- ${[...argv, "--verbose", "--output-dir", `/run/control-${i}`].join(" ")} &`,
      )
      .join("\n");
    const run = await s.c.sh(`${script}\nwait`, [], { allowFail: true, timeoutMs: 180_000 });
    expect(run.code, run.stderr).toBe(0);

    await s.c.syncJournal();
    const journal = await s.c.journal(names.map((_, i) => `control-${i}.service`));
    const intervals = names
      .map((_, i) => {
        const lines = journal.filter((e) => e.unit === `control-${i}.service`);
        const from = lines.find((e) => /^resolving \d+ reference/.test(e.message))?.realtimeUs;
        const to = lines.find((e) => /^resolved \d+ reference/.test(e.message))?.realtimeUs;
        expect(from !== undefined && to !== undefined, `control-${i} logged its resolve`).toBe(true);
        return { from: from!, to: to! };
      })
      .sort((x, y) => (x.from < y.from ? -1 : 1));
    const overlapping = intervals.slice(1).filter((iv, i) => Number(intervals[i]!.to - iv.from) / 1000 >= 5).length;
    console.log(`control without --serialize: ${overlapping} of ${names.length - 1} consecutive fetch pairs overlap by 5 ms or more`);
    expect(overlapping).toBeGreaterThan(0);
  }, 240_000);
});
