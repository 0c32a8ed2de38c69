// The credential agent as the Nix module generates it (tests/golden/units.json from
// tests/e2e/configuration.nix): agent-demo (delivery = "credentials", DynamicUser=) gets a
// file, an env file and a template from the socket-activated agent, never the token.
import { afterAll, beforeAll, expect, it } from "vitest";
import { bootScenario, describeE2E, waitForProbe, type Scenario } from "./scenario.js";
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

  it("agent-demo starts with its three credentials, owned by its dynamic uid, rendered from the vault", async () => {
    const fields = demoVault().vaults["Demo"]!.items;
    const start = await s.c.cx(["systemctl", "start", service], { allowFail: true });
    const journal = async () => (await s.c.cx(["journalctl", "-b0", "-o", "cat", "-u", service, "-u", "homelab-secrets-agent.service"], { allowFail: true })).stdout;
    expect(start.code, `${start.stderr}\n${await journal()}`).toBe(0);
    const lines = await waitForProbe(s.c, service, "agent-demo");
    const uid = Number(lines.find((l) => l.startsWith("id "))!.match(/uid=(\d+)/)![1]);
    expect(uid).toBeGreaterThanOrEqual(61184);
    const dir = "/run/credentials/agent-demo.service";
    const read = async (id: string) => (await s.c.cx(["cat", `${dir}/${id}`])).stdout;
    expect(await read("password")).toBe(fields["dynamic"]!.fields!["password"]);
    expect(await read("app.env")).toBe(`STATIC_PASSWORD="${fields["static"]!.fields!["password"]!.replace(/[\\"$`]/g, "\\$&")}"\n`);
    expect(await read("config.ini")).toBe(`user = ${fields["static"]!.fields!["username"]}\n`);
    const owners = (await s.c.sh('stat -c "%n %u %a" "$1"/*', [dir])).stdout.trim().split("\n");
    expect(owners).toEqual(["app.env", "config.ini", "password"].map((id) => `${dir}/${id} ${uid} 400`));
    expect(lines.filter((l) => l.startsWith("credential readable")).sort(), "the service reads its own credentials and nothing else").toEqual(
      ["app.env", "config.ini", "password"].map((id) => `credential readable ${dir}/${id}`),
    );
    expect(await journal(), "no value in the journal").not.toContain(fields["dynamic"]!.fields!["password"]);
  });
});
