// Boot storm under real systemd (nspawn, systemd 252): N services started by one
// `systemctl start`, their secrets fetched per service (`homelab-secrets fetch`, one Node
// process and one backend sign-in each) vs served by the credential agent (one front end, one
// Node process, one batch). Reports wall time of the start, peak Σ RSS of the processes
// involved (sampled every 10 ms inside the container) and backend requests at the fake Connect
// server. Numbers only, no thresholds:
//   npx vitest run --config bench/agent/vitest.config.mts
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, it } from "vitest";
import { buildAgent } from "../../helper/scripts/build-agent.mjs";
import { startFakeConnect, type FakeConnect } from "../../tests/connect/fake-connect.mjs";
import { bootScenario, describeE2E, repoRoot, type Scenario } from "../../tests/e2e/scenario.js";

const sizes = [1, 10, 30];
const rounds = Number(process.env["BENCH_ROUNDS"] ?? 3);
const items = 5;
const max = Math.max(...sizes);
const token = `bench-token-${process.pid}`;
const vault = {
  vaults: {
    Agent: {
      items: Object.fromEntries(Array.from({ length: items }, (_, i) => [`item-${i}`, { fields: { password: `bench value ${i}` } }])),
    },
  },
};
const socket = "/run/homelab-secrets/credentials.sock";
const agentUnit = "homelab-secrets-agent.service";
const name = (kind: "bf" | "ba", i: number) => `${kind}-${String(i).padStart(2, "0")}`;
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;

describeE2E("bench: boot storm, per-service fetch vs the credential agent", () => {
  let s: Scenario;
  let server: FakeConnect;

  beforeAll(async () => {
    s = await bootScenario("agent-bench", undefined, { hostNetwork: true }); // its Connect server is on the host's loopback
    server = await startFakeConnect({ vault, token, port: 0, host: "127.0.0.1" });
    const host = `http://127.0.0.1:${server.port}`;
    buildAgent({ out: join(s.c.root, "usr/local/libexec/homelab-secrets-agent") });
    await s.c.cx(["mkdir", "-p", "/etc/homelab-secrets/bench"]);
    await s.c.writeFile("/usr/local/bin/rss-sampler.mjs", readFileSync(join(repoRoot, "bench/agent/rss-sampler.mjs"), "utf8"), "0755");
    await s.c.writeFile("/etc/homelab-secrets/bench-token", token, "0600");
    const policy = { version: 1, source: { type: "connect", host, tokenCredential: "op-token" }, units: {} as Record<string, unknown> };
    for (let i = 1; i <= max; i++) {
      const ref = `op://Agent/item-${i % items}/password`;
      const spec = {
        version: 1,
        name: name("bf", i),
        outputDir: `/run/${name("bf", i)}`,
        source: { type: "connect", host, tokenCredential: "op-connect-token" },
        files: { secret: { ref } },
      };
      await s.c.writeFile(`/etc/homelab-secrets/bench/${name("bf", i)}.json`, JSON.stringify(spec), "0644");
      // As homelab.secrets does it: a root oneshot fetches, the service starts after it.
      await s.c.writeFile(
        `/etc/systemd/system/${name("bf", i)}-secrets.service`,
        `[Service]\nType=oneshot\nRemainAfterExit=yes\nLoadCredential=op-connect-token:/etc/homelab-secrets/bench-token\nExecStart=/opt/homelab-secrets/bin/homelab-secrets fetch --spec /etc/homelab-secrets/bench/${name("bf", i)}.json\n`,
      );
      await s.c.writeFile(
        `/etc/systemd/system/${name("bf", i)}.service`,
        `[Unit]\nRequires=${name("bf", i)}-secrets.service\nAfter=${name("bf", i)}-secrets.service\n[Service]\nExecStart=/bin/sleep infinity\n`,
      );
      policy.units[`${name("ba", i)}.service`] = { files: { secret: { ref } } };
      await s.c.writeFile(
        `/etc/systemd/system/${name("ba", i)}.service`,
        `[Unit]\nRequires=homelab-secrets-agent.socket\nAfter=homelab-secrets-agent.socket\n[Service]\nLoadCredential=secret:${socket}\nExecStartPre=/usr/local/libexec/homelab-secrets-agent --guard secret\nExecStart=/bin/sleep infinity\n`,
      );
    }
    await s.c.writeFile("/etc/homelab-secrets/agent-policy.json", JSON.stringify(policy), "0600");
    await s.c.writeFile("/etc/homelab-secrets/op-token", token, "0600");
    await s.c.writeFile(
      "/etc/systemd/system/homelab-secrets-agent.socket",
      readFileSync(join(repoRoot, "examples/plain-linux/agent/homelab-secrets-agent.socket"), "utf8"),
    );
    const shipped = readFileSync(join(repoRoot, "examples/plain-linux/agent", agentUnit), "utf8");
    await s.c.writeFile(
      `/etc/systemd/system/${agentUnit}`,
      shipped
        .replace("/usr/libexec/homelab-secrets/homelab-secrets-agent", "/usr/local/libexec/homelab-secrets-agent")
        .replace("/usr/bin/homelab-secrets agent", "/opt/homelab-secrets/bin/homelab-secrets agent"),
    );
    await s.c.cx(["systemctl", "daemon-reload"]);
    await s.c.cx(["systemctl", "start", "homelab-secrets-agent.socket"]);
  }, 300_000);
  afterAll(async () => {
    await server?.close();
    await s?.c.teardown();
  }, 60_000);

  /** One storm: start the units, sample RSS meanwhile; the agent (if any) starts cold. */
  async function storm(kind: "bf" | "ba", n: number, warm = false): Promise<{ wallMs: number; peakMiB: number; requests: number }> {
    const units = Array.from({ length: n }, (_, i) => `${name(kind, i + 1)}.service`);
    const secrets = kind === "bf" ? units.map((u) => u.replace(/\.service$/, "-secrets.service")) : [];
    await s.c.cx(["systemctl", "stop", ...units, ...secrets, ...(warm ? [] : [agentUnit])], { allowFail: true });
    await s.c.cx(["systemctl", "reset-failed"], { allowFail: true });
    const pattern = kind === "bf" ? "^bf-\\d+(-secrets)?\\.service$" : "^(ba-\\d+|homelab-secrets-agent)\\.service$";
    await s.c.cx([
      "systemd-run",
      "--quiet",
      "--unit=bench-sampler",
      "-p",
      "StandardOutput=file:/run/bench-sampler.out",
      "/usr/local/bin/node",
      "/usr/local/bin/rss-sampler.mjs",
      pattern,
    ]);
    await new Promise((r) => setTimeout(r, 200));
    server.clearRequests();
    const t0 = Date.now();
    const r = await s.c.cx(["systemctl", "start", ...units], { allowFail: true, timeoutMs: 300_000 });
    const wallMs = Date.now() - t0;
    if (r.code !== 0) throw new Error(`${kind} storm of ${n} failed: ${r.stderr}`);
    await new Promise((r) => setTimeout(r, 100));
    await s.c.cx(["systemctl", "stop", "bench-sampler.service"]);
    const peak = Number((await s.c.cx(["cat", "/run/bench-sampler.out"])).stdout.match(/peak-kib (\d+)/)?.[1] ?? NaN);
    return { wallMs, peakMiB: Math.round(peak / 1024), requests: server.requests.length };
  }

  it("1/10/30 services: wall, peak Σ RSS, backend requests", async () => {
    const rows: Array<Record<string, string | number>> = [];
    for (const n of sizes) {
      for (const kind of ["bf", "ba"] as const) {
        const runs = [];
        for (let k = 0; k < rounds; k++) runs.push(await storm(kind, n));
        const warm = [];
        if (kind === "ba") for (let k = 0; k < rounds; k++) warm.push(await storm(kind, n, true));
        rows.push({
          services: n,
          delivery: kind === "bf" ? "per-service fetch (-secrets oneshot + service)" : "agent, cold (agent not running)",
          "wall ms (median)": median(runs.map((x) => x.wallMs)),
          "peak Σ RSS MiB (median)": median(runs.map((x) => x.peakMiB)),
          "backend requests": median(runs.map((x) => x.requests)),
        });
        if (warm.length > 0) {
          rows.push({
            services: n,
            delivery: "agent, warm (running, within the TTL)",
            "wall ms (median)": median(warm.map((x) => x.wallMs)),
            "peak Σ RSS MiB (median)": median(warm.map((x) => x.peakMiB)),
            "backend requests": median(warm.map((x) => x.requests)),
          });
        }
      }
    }
    // RSS counts pages shared with systemd's own forks (the children it forks before exec,
    // (sd-mkdcreds) included) once per process: an upper bound, the same for both columns.
    console.log(
      `boot storm under systemd 252, ${rounds} rounds each, fake Connect on loopback, ${items} distinct items, services as root:`,
    );
    console.table(rows);
  }, 900_000);
});
