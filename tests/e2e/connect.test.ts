// The Connect backend over real HTTP: a secrets unit under systemd talks to the project's
// fake 1Password Connect server (run here; the container reaches it on its own loopback), with faults.
import { afterAll, afterEach, beforeAll, expect, it } from "vitest";
import type { FakeConnect, Fault } from "../connect/fake-connect.mjs";
import { bootScenario, connectBackendOf, describeE2E, serveConnect, probeFiles, sha256, waitForProbe, type Scenario } from "./scenario.js";
import { demoVault } from "./vault.js";

const name = "connect-demo";
const service = `${name}.service`;
const secrets = `${name}-secrets.service`;

describeE2E("real systemd: the connect source against a local Connect server", () => {
  let s: Scenario;
  let server: FakeConnect | undefined;
  let port = 0;
  let token = "";
  let deadline = 45;
  const vault = demoVault();
  const value = vault.vaults["Demo"]!.items["connect"]!.fields!["password"]!;

  beforeAll(async () => {
    s = await bootScenario("connect", vault);
    ({ port, token, deadline } = connectBackendOf(s, secrets));
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

  const serve = async (faults: Fault[] = [], serverToken = token) => {
    server = await serveConnect(s.c, port, { vault, token: serverToken, faults });
  };
  const secretsJournal = async () => {
    await s.c.syncJournal();
    const { InvocationID } = await s.c.show(secrets, ["InvocationID"]);
    return (await s.c.cx(["journalctl", "-b0", "-o", "cat", `_SYSTEMD_INVOCATION_ID=${InvocationID}`], { allowFail: true })).stdout;
  };

  it("unreachable backend: the secrets unit fails within its deadline and the service does not start", async () => {
    const t0 = Date.now();
    const start = await s.c.cx(["systemctl", "start", service], { allowFail: true, timeoutMs: (deadline + 30) * 1000 });
    const elapsed = (Date.now() - t0) / 1000;
    const journal = await secretsJournal();
    console.log(`unreachable Connect: failed after ${elapsed.toFixed(1)} s (deadline ${deadline} s); journal:\n${journal}`);
    expect(start.stderr).toMatch(/A dependency job for connect-demo\.service failed/);
    expect(elapsed).toBeLessThan(deadline + 2);
    expect(await s.c.show(secrets, ["Result", "ExecMainStatus"])).toEqual({ Result: "exit-code", ExecMainStatus: "75" });
    expect((await s.c.show(service, ["InvocationID"])).InvocationID).toBe("");
    const errors = journal.split("\n").filter((l) => l.includes("op://Demo/connect/password"));
    expect(errors, "a readable journal line naming the reference that could not be fetched").not.toEqual([]);
  }, 120_000);

  it("transient faults (503, reset, 429 Retry-After) are retried over real HTTP and the fetch succeeds", async () => {
    await serve([
      { type: "status", status: 503, times: 1 },
      { type: "reset", times: 1 },
      { type: "status", status: 429, retryAfter: 1, times: 1 },
    ]);
    const start = await s.c.cx(["systemctl", "start", service], { allowFail: true, timeoutMs: (deadline + 30) * 1000 });
    const journal = await secretsJournal();
    expect(start.code, `${start.stderr}\n${journal}`).toBe(0);
    const faults = server!.requests.filter((r) => r.fault).map((r) => r.fault);
    expect(faults).toEqual(["status 503", "reset", "status 429"]);
    const after429 = server!.requests.findIndex((r) => r.fault === "status 429");
    const retried = server!.requests.slice(after429 + 1);
    expect(retried.length, "requests after the 429").toBeGreaterThan(0);
    expect(retried[0]!.start - server!.requests[after429]!.start, "Retry-After: 1 honoured").toBeGreaterThanOrEqual(950);
    expect(
      server!.requests.every((r) => r.authorized),
      "every request carried the credential's token",
    ).toBe(true);
    const files = probeFiles(await waitForProbe(s.c, service, name));
    expect([...files.values()].map((f) => f.sha256)).toContain(sha256(value));
    console.log(`Connect with faults: ${server!.requests.length} requests; journal:\n${journal}`);
  }, 120_000);

  it("a rejected token fails at once (exit 77) without retrying", async () => {
    await serve([], "some-other-token");
    const t0 = Date.now();
    const start = await s.c.cx(["systemctl", "start", service], { allowFail: true, timeoutMs: (deadline + 30) * 1000 });
    expect(start.code).not.toBe(0);
    expect((Date.now() - t0) / 1000, "no retry loop on a permanent failure").toBeLessThan(3);
    expect(await s.c.show(secrets, ["ExecMainStatus"])).toEqual({ ExecMainStatus: "77" });
    const unauthorized = server!.requests.filter((r) => !r.authorized);
    expect(unauthorized.length).toBeGreaterThan(0);
    expect(new Set(unauthorized.map((r) => r.path)).size, "each path asked once").toBe(unauthorized.length);
  }, 120_000);
});
