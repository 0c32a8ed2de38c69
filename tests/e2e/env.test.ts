// The env file round trip: what the backend holds is, byte for byte, what the service's
// process gets in its environment via EnvironmentFile= — for values that break naive quoting.
import { afterAll, beforeAll, expect, it } from "vitest";
import { specOfUnit, unitValues } from "./render-units.js";
import { bootScenario, describeE2E, mainEnviron, waitForProbe, type Scenario } from "./scenario.js";
import { demoVault, nasty, resolveRef } from "./vault.js";

const name = "static-demo";
const service = `${name}.service`;

/** NUL-separated KEY=value entries into a map of raw bytes. */
function parseEnviron(raw: Buffer): Map<string, Buffer> {
  const env = new Map<string, Buffer>();
  for (const entry of raw.toString("latin1").split("\0").filter(Boolean)) {
    const eq = entry.indexOf("=");
    env.set(entry.slice(0, eq), Buffer.from(entry.slice(eq + 1), "latin1"));
  }
  return env;
}

const show = (b: Buffer | undefined) => (b === undefined ? "(unset)" : JSON.stringify(b.toString("utf8")));

describeE2E("real systemd: env file values reach the service byte for byte", () => {
  let s: Scenario;
  const vault = demoVault();
  beforeAll(async () => {
    s = await bootScenario("env", vault);
  }, 120_000);
  afterAll(async () => {
    await s?.c.teardown();
  }, 60_000);

  it("the service's environment equals the backend's values for every variable", async () => {
    const spec = specOfUnit(s.golden, `${name}-secrets.service`);
    const envFiles = unitValues(s.golden, service, "Service", "EnvironmentFile").map((p) => p.replace(/^-/, ""));
    const vars = Object.entries(spec?.envFiles ?? {})
      .filter(([file]) => envFiles.includes(`${spec!.outputDir}/${file}`))
      .flatMap(([, f]) => Object.entries(f.vars));
    expect(vars.length, `${service} reads an env file from its spec`).toBeGreaterThan(0);
    const nastyRefs = vars.filter(([, ref]) => /^op:\/\/Demo\/nasty\//.test(ref)).length;
    expect(nastyRefs, "the golden env file covers the nasty table").toBeGreaterThanOrEqual(Object.keys(nasty).length);

    const start = await s.c.cx(["systemctl", "start", service], { allowFail: true });
    expect(start.code, start.stderr).toBe(0);
    const lines = await waitForProbe(s.c, service, name);
    const fromInside = parseEnviron(Buffer.from(lines.find((l) => l.startsWith("environ "))!.slice(8), "base64"));
    const fromProc = await mainEnviron(s.c, service);

    const rows: Array<{ variable: string; ref: string; ok: boolean; got?: string; want?: string }> = [];
    for (const [key, ref] of vars) {
      const want = Buffer.from(resolveRef(vault, ref), "utf8");
      const got = fromInside.get(key);
      const ok = got !== undefined && got.equals(want) && fromProc.get(key)?.equals(want) === true;
      rows.push(ok ? { variable: key, ref, ok } : { variable: key, ref, ok, got: show(got), want: show(want) });
    }
    console.log("env file round trip (backend → EnvironmentFile= → process environment):");
    console.table(rows);
    expect(rows.filter((r) => !r.ok)).toEqual([]);
  });
});
