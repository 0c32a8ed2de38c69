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
});
