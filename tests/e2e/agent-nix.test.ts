// The credential agent as the Nix module generates it (tests/golden/units.json from
// tests/e2e/configuration.nix): agent-demo (delivery = "credentials", DynamicUser=) gets a
// file, an env file and a template from the socket-activated agent, never the token.
import { afterAll, beforeAll, expect, it } from "vitest";
import { bootScenario, describeE2E, mainEnviron, probeFiles, sha256, waitForProbe, type Scenario } from "./scenario.js";
import { demoVault } from "./vault.js";

const service = "agent-demo.service";

describeE2E("real systemd: the credential agent from the Nix module's units", () => {
  let s: Scenario;
  beforeAll(async () => {
    s = await bootScenario("agent-nix");
  }, 120_000);
  afterAll(async () => {
    await s?.c.teardown();
  }, 60_000);

  it("agent-demo starts with its three credentials, readable by its dynamic uid only, rendered from the vault", async () => {
    const fields = demoVault().vaults["Demo"]!.items;
    const start = await s.c.cx(["systemctl", "start", service], { allowFail: true });
    const journal = async () =>
      (await s.c.cx(["journalctl", "-b0", "-o", "cat", "-u", service, "-u", "homelab-secrets-agent.service"], { allowFail: true })).stdout;
    expect(start.code, `${start.stderr}\n${await journal()}`).toBe(0);
    const lines = await waitForProbe(s.c, service, "agent-demo");
    const uid = Number(lines.find((l) => l.startsWith("id "))!.match(/uid=(\d+)/)![1]);
    expect(uid).toBeGreaterThanOrEqual(61184);
    const dir = "/run/credentials/agent-demo.service";
    const read = async (id: string) => (await s.c.cx(["cat", `${dir}/${id}`])).stdout;
    expect(await read("password")).toBe(fields["dynamic"]!.fields!["password"]);
    expect(await read("app.env")).toBe(`STATIC_PASSWORD="${fields["static"]!.fields!["password"]!.replace(/[\\"$`]/g, "\\$&")}"\n`);
    expect(await read("config.ini")).toBe(`user = ${fields["static"]!.fields!["username"]}\n`);
    // systemd 252 makes them the service user's (group root), 0400; systemd 257 keeps them
    // root:root 0440 and lets the service in by an ACL entry (the probe read them). Nobody
    // else reads them.
    const owners = (await s.c.sh('stat -c "%n %u %g %a" "$1"/*', [dir])).stdout.trim().split("\n");
    for (const [i, id] of ["app.env", "config.ini", "password"].entries()) {
      expect([`${dir}/${id} ${uid} 0 400`, `${dir}/${id} 0 0 440`], owners.join("; ")).toContain(owners[i]);
      const other = await s.c.cx(["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups", "cat", `${dir}/${id}`], {
        allowFail: true,
      });
      expect(other.code, `another user cannot read ${id}`).not.toBe(0);
    }
    expect(
      lines.filter((l) => l.startsWith("credential readable")).sort(),
      "the service reads its own credentials and nothing else",
    ).toEqual(["app.env", "config.ini", "password"].map((id) => `credential readable ${dir}/${id}`));
    expect(await journal(), "no value in the journal").not.toContain(fields["dynamic"]!.fields!["password"]);
  });

  it('agentfiles-demo (delivery = "files", throughAgent): its -secrets unit writes what the agent served, owned as the spec says, without a token', async () => {
    const fields = demoVault().vaults["Demo"]!.items["static"]!.fields!;
    const start = await s.c.cx(["systemctl", "start", "agentfiles-demo.service"], { allowFail: true });
    const journal = async () =>
      (
        await s.c.cx(["journalctl", "-b0", "-o", "cat", "-u", "agentfiles-demo-secrets.service", "-u", "homelab-secrets-agent.service"], {
          allowFail: true,
        })
      ).stdout;
    expect(start.code, `${start.stderr}\n${await journal()}`).toBe(0);
    const files = probeFiles(await waitForProbe(s.c, "agentfiles-demo.service", "agentfiles-demo"));
    const uid = await s.uid("static-demo");
    expect(files.get("/run/agentfiles-demo-secrets/password")).toMatchObject({ mode: "400", uid, sha256: sha256(fields["password"]!) });
    expect(files.get("/run/agentfiles-demo-secrets/agentfiles.env")).toMatchObject({ mode: "400", uid });
    expect(
      (await mainEnviron(s.c, "agentfiles-demo.service")).get("STATIC_USER")?.toString(),
      "the env file reached EnvironmentFile=",
    ).toBe(fields["username"]);
    const text = await journal();
    expect(text).toMatch(/agentfiles-demo-secrets\.service: credential password: served \d+ bytes/);
    expect(text).toMatch(/agentfiles-demo: wrote 2 file\(s\) to \/run\/agentfiles-demo-secrets from the credential agent/);
    const { LoadCredential } = await s.c.show("agentfiles-demo-secrets.service", ["LoadCredential"]);
    expect(LoadCredential, "no token, only the agent's socket").not.toMatch(/token/);
  });
  it("homelab.agent.cache: the module's key unit (its writeShellScript) runs before the agent, which seals what it served; the key survives the agent's restart", async () => {
    const keyUnit = "homelab-secrets-agent-key.service";
    const agentUnit = "homelab-secrets-agent.service";
    const stateDir = "/var/lib/private/homelab-secrets-agent";
    const messages = async (unit: string) => (await s.c.journal([unit])).map((e) => e.message);
    // The tests above started the agent (agent-demo's loads): the key unit ran first.
    const key = await s.c.show(keyUnit, ["Result", "ExecMainStatus", "ExecMainStartTimestampMonotonic", "ExecMainExitTimestampMonotonic"]);
    const why = `${(await messages(keyUnit)).join("\n")}\n${(await messages(agentUnit)).join("\n")}`;
    expect(key.Result, why).toBe("success");
    expect(key.ExecMainStatus, why).toBe("0");
    const ms = (Number(key.ExecMainExitTimestampMonotonic) - Number(key.ExecMainStartTimestampMonotonic)) / 1000;
    console.log(`[e2e] systemd ${s.systemd}: the key script ran in ${ms.toFixed(1)} ms`);
    const made = /made a new agent cache key/;
    expect((await messages(keyUnit)).filter((m) => made.test(m)).length, "one new key on a new host").toBe(1);
    const mode = (await s.c.cx(["stat", "-c", "%a %u", "/var/lib/homelab-secrets/agent-cache-key.cred"])).stdout.trim();
    expect(mode).toMatch(/^[67]00 0$/);
    const agentText = (await messages(agentUnit)).join("\n");
    expect(agentText).toMatch(/ttl 300 s, sealed cache \(max age 604800 s\)/);
    expect(agentText).not.toMatch(/agent cache: off/);
    const sealed = (await s.c.cx(["find", stateDir, "-type", "f"])).stdout.trim().split("\n");
    expect(sealed, "the agent sealed the values it served").toContain(`${stateDir}/values.sealed`);
    const fields = demoVault().vaults["Demo"]!.items;
    for (const value of [fields["dynamic"]!.fields!["password"]!, fields["static"]!.fields!["password"]!]) {
      const grep = await s.c.cx(["grep", "-rlF", "-e", value, "/var/lib/homelab-secrets", stateDir], { allowFail: true });
      expect(grep.stdout, "no value in any byte of the key or sealed files").toBe("");
    }

    // The agent stopped and started again (its next load): the key unit runs again and keeps the key, the sealed values unseal.
    await s.c.cx(["systemctl", "stop", "agent-demo.service", agentUnit]);
    const again = await s.c.cx(["systemctl", "start", "agent-demo.service"], { allowFail: true });
    expect(again.code, again.stderr).toBe(0);
    await waitForProbe(s.c, "agent-demo.service", "agent-demo");
    expect((await s.c.show(keyUnit, ["Result"])).Result).toBe("success");
    expect((await messages(keyUnit)).filter((m) => made.test(m)).length, "the same key: none made").toBe(1);
    const starts = (await messages(agentUnit)).filter((m) => /sealed cache \(max age/.test(m)).length;
    expect(starts, "the agent started twice, with its cache each time").toBe(2);
    expect((await messages(agentUnit)).join("\n")).not.toMatch(/ignoring the sealed values|agent cache: off/);
  });
});
