// A static-user service with a `<name>-secrets` unit, under a real systemd 252.
import { afterAll, beforeAll, expect, it } from "vitest";
import { specOfUnit, type Spec } from "./render-units.js";
import { bootScenario, describeE2E, probeFiles, sha256, waitForProbe, type Scenario } from "./scenario.js";
import { demoVault, renderTemplate, resolveRef, type Vault } from "./vault.js";

const name = "static-demo";
const service = `${name}.service`;
const secrets = `${name}-secrets.service`;

/** What the probe must find at start: name → mode and expected bytes (env files: checked elsewhere). */
function expectedOutputs(spec: Spec, vault: Vault): Map<string, { mode: string; content?: string }> {
  const out = new Map<string, { mode: string; content?: string }>();
  for (const [file, f] of Object.entries(spec.files ?? {})) out.set(file, { mode: f.mode ?? "0400", content: resolveRef(vault, f.ref) });
  for (const [file, f] of Object.entries(spec.templates ?? {}))
    out.set(file, { mode: f.mode ?? "0400", content: renderTemplate(vault, f.content) });
  for (const [file, f] of Object.entries(spec.envFiles ?? {})) out.set(file, { mode: f.mode ?? "0400" });
  return out;
}

describeE2E("real systemd: static-user service with a secrets unit", () => {
  let s: Scenario;
  let spec: Spec;
  beforeAll(async () => {
    s = await bootScenario("static");
    const found = specOfUnit(s.golden, secrets);
    if (!found) throw new Error(`${secrets} has no --spec in the golden units`);
    spec = found;
  }, 120_000);
  afterAll(async () => {
    await s?.c.teardown();
  }, 60_000);

  async function checkProbeSaw(vault: Vault) {
    const lines = await waitForProbe(s.c, service, name);
    const files = probeFiles(lines);
    const uid = await s.uid(spec.owner ?? "root");
    const gid = Number((await s.c.cx(["getent", "group", spec.group ?? spec.owner ?? "root"])).stdout.split(":")[2]);
    for (const [file, want] of expectedOutputs(spec, vault)) {
      const seen = files.get(`${spec.outputDir}/${file}`);
      expect(seen, `${file} present when ExecStart began`).toBeDefined();
      expect({ file, mode: seen!.mode, uid: seen!.uid, gid: seen!.gid }).toEqual({
        file,
        mode: String(parseInt(want.mode, 8).toString(8)),
        uid,
        gid,
      });
      expect(seen!.sha256, `${file} readable by the service`).not.toBe("unreadable");
      if (want.content !== undefined) expect(seen!.sha256, `${file} holds the backend's value`).toBe(sha256(want.content));
    }
    return lines;
  }

  it("writes every secret file with the spec's owner and mode before ExecStart runs", async () => {
    const vault = demoVault();
    const start = await s.c.cx(["systemctl", "start", service], { allowFail: true });
    expect(start.code, start.stderr).toBe(0);
    await checkProbeSaw(vault);
    const dir = (await s.c.cx(["stat", "-c", "%a %U %G", spec.outputDir])).stdout.trim();
    expect(dir).toBe(`${parseInt(spec.dirMode ?? "0750", 8).toString(8)} ${spec.owner} ${spec.group ?? spec.owner}`);
    const state = await s.c.show(secrets, ["ActiveState", "Result"]);
    expect(state).toEqual({ ActiveState: "active", Result: "success" });
  });

  it("loads the token into the secrets unit only, never into the service", async () => {
    const credDir = `/run/credentials/${secrets}`;
    const listing = await s.c.cx(["sh", "-c", 'stat -c "%a %U" "$1" "$1"/*', "sh", credDir], { allowFail: true });
    expect(listing.code, `${credDir} exists while ${secrets} is active`).toBe(0);
    expect(listing.stdout).toMatch(/^500 root\n400 root\n$/);
    const token = (await s.c.cx(["cat", `${credDir}/op-token`])).out;

    const lines = await waitForProbe(s.c, service, name);
    expect(lines.filter((l) => l.startsWith("credential readable"))).toEqual([]);
    expect(lines).toContain(`credential denied ${credDir}/*`);
    expect(lines.some((l) => l.startsWith("credentials-directory"))).toBe(false);
    const environ = Buffer.from(lines.find((l) => l.startsWith("environ "))!.slice("environ ".length), "base64");
    expect(environ.includes(token), "token in the service's environment").toBe(false);
  });

  it("re-fetches on `systemctl restart` (new backend value reaches the service)", async () => {
    const before = await s.c.show(secrets, ["InvocationID"]);
    const vault = demoVault({ static: 'static-v2 rotated "value"' });
    await s.setVault(vault);
    const restart = await s.c.cx(["systemctl", "restart", service], { allowFail: true });
    expect(restart.code, restart.stderr).toBe(0);
    expect((await s.c.show(secrets, ["InvocationID"])).InvocationID).not.toBe(before.InvocationID);
    await checkProbeSaw(vault);
  });

  it("removes the secrets on `systemctl stop`", async () => {
    await s.c.cx(["systemctl", "stop", service]);
    // systemctl waits for the job it asked for; the PartOf= stop of the secrets unit (its
    // ExecStop= cleanup) may still be running when it returns.
    expect(await s.c.waitForState(secrets, "inactive", 10_000)).toBe("inactive");
    const left = await s.c.cx(["sh", "-c", 'ls -A "$1" 2>/dev/null', "sh", spec.outputDir], { allowFail: true });
    expect(left.stdout, `files left in ${spec.outputDir}`).toBe("");
    const cred = await s.c.cx(["test", "-e", `/run/credentials/${secrets}`], { allowFail: true });
    expect(cred.code, "credential dir removed").not.toBe(0);
  });
});
