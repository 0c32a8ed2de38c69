// The credential agent's sealed last-known-good cache under real systemd: the shipped socket,
// agent and key units (examples/plain-linux/agent/, the agent's cache lines uncommented as its
// comment says), a DynamicUser= consumer, the fake Connect on the container's loopback.
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, afterEach, beforeAll, expect, it } from "vitest";
import { buildAgent } from "../../helper/scripts/build-agent.mjs";
import type { FakeConnect } from "../connect/fake-connect.mjs";
import { bootScenario, describeE2E, repoRoot, serveConnect, sha256, type Scenario } from "./scenario.js";

const socketPath = "/run/homelab-secrets/credentials.sock";
const agentUnit = "homelab-secrets-agent.service";
const keyUnit = "homelab-secrets-agent-key.service";
const consumer = "agent-lkg.service";
const keyFile = "/var/lib/homelab-secrets/agent-cache-key.cred";
const stateDir = "/var/lib/private/homelab-secrets-agent";
const sealedFile = `${stateDir}/values.sealed`;
const token = `agent-cache-e2e-${process.pid}`;
const value = `last good ✓ ${process.pid} "quoted"`;
const vault = { vaults: { Agent: { items: { db: { fields: { password: value } } } } } };
const port = 18183;
const deadline = 3;
const maxAge = 20;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

const policy = {
  version: 1,
  source: { type: "connect", host: `http://127.0.0.1:${port}`, tokenCredential: "op-token" },
  units: { [consumer]: { files: { secret: { ref: "op://Agent/db/password" } } } },
};

const probe = `#!/bin/sh
for f in "$CREDENTIALS_DIRECTORY"/*; do
  printf 'agent-lkg-probe credential %s %s\\n' "$(basename "$f")" "$(sha256sum <"$f" | cut -d' ' -f1)"
done
echo agent-lkg-probe ready
exec sleep infinity
`;

describeE2E("real systemd: the credential agent's sealed last-known-good cache", () => {
  let s: Scenario;
  let server: FakeConnect | undefined;
  /** When the cache was last warmed (host clock; the container shares it). */
  let warmAt = 0;

  const serve = async (t = token) => {
    server = await serveConnect(s.c, port, { vault, token: t });
  };
  const down = async () => {
    await server?.close();
    server = undefined;
  };
  const start = () => s.c.cx(["systemctl", "start", consumer], { allowFail: true, timeoutMs: 60_000 });
  const since = async () => (await s.c.cx(["date", "+%Y-%m-%d %H:%M:%S"])).stdout.trim();
  const journal = async (units: string[], from: string) => {
    await s.c.syncJournal();
    return s.c.journal(units, from);
  };
  const served = async () => {
    for (let i = 0; i < 100; i++) {
      await s.c.syncJournal();
      const { InvocationID } = await s.c.show(consumer, ["InvocationID"]);
      const r = await s.c.cx(["journalctl", "-b0", "-o", "cat", `_SYSTEMD_INVOCATION_ID=${InvocationID}`], { allowFail: true });
      if (r.stdout.includes("agent-lkg-probe ready")) return /agent-lkg-probe credential secret (\S+)/.exec(r.stdout)?.[1];
      await sleep(100);
    }
    throw new Error(`${consumer} did not report`);
  };
  /** Stop consumer and agent (its memory cache goes with it). */
  const stopAll = async () => {
    await s.c.cx(["systemctl", "stop", consumer, agentUnit], { allowFail: true });
    await s.c.cx(["systemctl", "reset-failed", consumer, agentUnit, keyUnit], { allowFail: true });
  };
  /** For the docs, not asserted: how long the key unit's last run took. */
  const keyUnitMs = async () => {
    const t = await s.c.show(keyUnit, ["InactiveExitTimestampMonotonic", "InactiveEnterTimestampMonotonic"]);
    return ((Number(t["InactiveEnterTimestampMonotonic"]) - Number(t["InactiveExitTimestampMonotonic"])) / 1000).toFixed(1);
  };
  const warm = async () => {
    await serve();
    const r = await start();
    expect(r.code, r.stderr).toBe(0);
    warmAt = Date.now();
    expect(await served()).toBe(sha256(value));
    await stopAll();
    await down();
  };

  beforeAll(async () => {
    s = await bootScenario("agent-cache");
    buildAgent({ out: join(s.c.root, "usr/local/libexec/homelab-secrets-agent") });
    await s.c.writeFile("/etc/homelab-secrets/op-token", token, "0600");
    await s.c.writeFile("/etc/homelab-secrets/agent-policy.json", JSON.stringify(policy), "0600");
    await s.c.writeFile("/usr/local/bin/agent-lkg-probe", probe, "0755");
    const shipped = (unit: string) => readFileSync(join(repoRoot, "examples/plain-linux/agent", unit), "utf8");
    await s.c.writeFile(`/etc/systemd/system/homelab-secrets-agent.socket`, shipped("homelab-secrets-agent.socket"));
    await s.c.writeFile(`/etc/systemd/system/${keyUnit}`, shipped(keyUnit));
    const agent = shipped(agentUnit)
      .replace(/^#(Requires|After)=homelab-secrets-agent-key\.service$/gm, "$1=homelab-secrets-agent-key.service")
      .replace(/^#(LoadCredentialEncrypted=agent-cache-key:|StateDirectory=|StateDirectoryMode=)/gm, "$1")
      .replace("/usr/libexec/homelab-secrets/homelab-secrets-agent", "/usr/local/libexec/homelab-secrets-agent")
      .replace("/usr/bin/homelab-secrets agent", "/opt/homelab-secrets/bin/homelab-secrets agent")
      .replace("--deadline 45", `--deadline ${deadline} --cache --cache-max-age ${maxAge}`);
    for (const line of [
      "Requires=homelab-secrets-agent-key.service",
      "After=homelab-secrets-agent-key.service",
      `LoadCredentialEncrypted=agent-cache-key:${keyFile}`,
      "StateDirectory=homelab-secrets-agent",
      "StateDirectoryMode=0700",
    ])
      expect(agent, "the shipped unit's commented cache lines").toMatch(new RegExp(`^${line.replace(/[.]/g, "\\.")}$`, "m"));
    expect(agent).toMatch(/ -- \/opt\/homelab-secrets\/bin\/homelab-secrets agent .*--cache --cache-max-age 20$/m);
    await s.c.writeFile(`/etc/systemd/system/${agentUnit}`, agent);
    await s.c.writeFile(
      `/etc/systemd/system/${consumer}`,
      `[Unit]
Requires=homelab-secrets-agent.socket
After=homelab-secrets-agent.socket
[Service]
DynamicUser=yes
LoadCredential=secret:${socketPath}
ExecStartPre=/usr/local/libexec/homelab-secrets-agent --guard secret
ExecStart=/usr/local/bin/agent-lkg-probe
`,
    );
    await s.c.cx(["systemctl", "daemon-reload"]);
    await s.c.cx(["systemctl", "start", "homelab-secrets-agent.socket"]);
  }, 180_000);
  afterEach(async () => {
    await stopAll();
    await down();
  });
  afterAll(async () => {
    await down();
    await s?.c.teardown();
  }, 60_000);

  it("a fresh serve seals the value: the key root's 0600 in a 0700 dir, the sealed file the agent's 0600/0700, no value in any file", async () => {
    await warm();
    expect((await s.c.cx(["stat", "-c", "%a %u %F", "/var/lib/homelab-secrets"])).stdout.trim()).toBe("700 0 directory");
    expect((await s.c.cx(["stat", "-c", "%a %u", keyFile])).stdout.trim()).toBe("600 0");
    expect((await s.c.cx(["stat", "-c", "%a", stateDir])).stdout.trim()).toBe("700");
    expect((await s.c.cx(["stat", "-c", "%a", sealedFile])).stdout.trim()).toBe("600");
    const files = (await s.c.cx(["find", "/var/lib/homelab-secrets", stateDir, "-type", "f"])).stdout.trim().split("\n").sort();
    expect(files).toEqual([keyFile, sealedFile]);
    for (const f of files) {
      const bytes = (await s.c.cx(["cat", f])).out;
      expect(bytes.length).toBeGreaterThan(0);
      for (const needle of [value, "op://Agent/db/password", Buffer.from(value).toString("base64")])
        expect(bytes.includes(Buffer.from(needle)), `${needle} in ${f}`).toBe(false);
    }
    const grep = await s.c.cx(["grep", "-rlF", "-e", value, "/var/lib/homelab-secrets", stateDir], { allowFail: true });
    expect(grep.code, grep.stdout).toBe(1);
    console.info(`${keyUnit}, first run (key made): ${await keyUnitMs()} ms`);
  }, 90_000);

  it("Connect down, agent restarted: the DynamicUser consumer starts with the last value and a warning; past maxAge its start fails", async () => {
    await warm();
    let from = await since();
    const began = Date.now();
    const r = await start();
    console.info(`a start on cached values (deadline ${deadline} s): ${Date.now() - began} ms`);
    expect(r.code, r.stderr).toBe(0);
    expect(await served()).toBe(sha256(value));
    const lines = await journal([agentUnit], from);
    const warning = lines.find((e) =>
      /^agent-lkg\.service: credential secret: served cached values from \d+ s ago: backend failed: could not resolve op:\/\/Agent\/db\/password/.test(
        e.message,
      ),
    );
    expect(warning, lines.map((e) => e.message).join("\n")).toBeDefined();
    expect(warning!.priority).toBe(4);
    // The guard and ExecStart= load the credential one after the other: one backend wait, not two.
    await s.c.syncJournal();
    const { InvocationID } = await s.c.show(agentUnit, ["InvocationID"]);
    const invocation = (await s.c.cx(["journalctl", "-b0", "-o", "cat", `_SYSTEMD_INVOCATION_ID=${InvocationID}`])).stdout.split("\n");
    expect(invocation.filter((l) => /^backend batch \d+:/.test(l))).toEqual([expect.stringMatching(/^backend batch 1: /)]);
    expect(lines.map((e) => e.message)).toContainEqual(
      expect.stringMatching(/^agent-lkg\.service: credential secret: not asking the backend again \d+ s after it failed$/),
    );
    await stopAll();

    const left = warmAt + maxAge * 1000 + 1000 - Date.now();
    if (left > 0) await sleep(left);
    from = await since();
    const late = await start();
    expect(late.code).not.toBe(0);
    expect((await s.c.show(consumer, ["ActiveState"])).ActiveState).not.toBe("active");
    const text = (await journal([agentUnit], from)).map((e) => e.message).join("\n");
    expect(text).toMatch(
      /agent-lkg\.service: credential secret: cached values not used: the value of op:\/\/Agent\/db\/password: it is \d+ s old, older than the maximum age of 20 s/,
    );
    expect(text).not.toMatch(/served cached values/);
  }, 120_000);

  it("a rejected token (401) with a warm cache: the start fails, no cached value", async () => {
    await warm();
    await serve("not-the-token");
    const from = await since();
    const r = await start();
    expect(r.code).not.toBe(0);
    const text = (await journal([agentUnit], from)).map((e) => e.message).join("\n");
    expect(text).toMatch(/not for this one \(exit 77\)/);
    expect(text).not.toMatch(/served cached values/);
    expect(server!.requests.length).toBeGreaterThan(0);
  }, 90_000);

  it("a new host key: the cache key is made anew, the old sealed values are not used, the next fresh serve seals again", async () => {
    await warm();
    const keyBefore = (await s.c.cx(["sha256sum", keyFile])).stdout;
    await s.c.cx(["rm", "/var/lib/systemd/credential.secret"]); // the key unit's `systemd-creds setup` makes a new one
    let from = await since();
    const r = await start();
    expect(r.code).not.toBe(0);
    expect((await s.c.cx(["sha256sum", keyFile])).stdout).not.toBe(keyBefore);
    expect((await journal([keyUnit], from)).map((e) => e.message).join("\n")).toMatch(/made a new agent cache key/);
    const text = (await journal([agentUnit], from)).map((e) => e.message).join("\n");
    expect(text).toMatch(/ignoring the sealed values: \S*values\.sealed does not authenticate/);
    expect(text).not.toMatch(/served cached values/);
    await stopAll();

    from = await since();
    await warm(); // fresh again: sealed under the new key, which stays (it decrypts)
    const keyNow = (await s.c.cx(["sha256sum", keyFile])).stdout;
    expect((await journal([keyUnit], from)).map((e) => e.message).join("\n")).not.toMatch(/made a new agent cache key/);
    const again = await start();
    expect(again.code, again.stderr).toBe(0);
    expect(await served()).toBe(sha256(value));
    expect((await s.c.cx(["sha256sum", keyFile])).stdout).toBe(keyNow);
    console.info(`${keyUnit}, key there and decrypting: ${await keyUnitMs()} ms`);
  }, 120_000);
});
