// Boot storm under real systemd (nspawn, systemd 252): N services started by one
// `systemctl start`, their secrets fetched per service (`homelab-secrets fetch`, one Node
// process and one backend sign-in each) vs served by the credential agent (one front end, one
// Node process, one batch). Reports wall time of the start, peak RSS of the processes involved
// (sampled every 10 ms inside the container, by class: the agent's own, the fetch processes,
// systemd's forks, the services' own) and backend requests at the fake Connect server. Then
// "one more credential when warm": a unit start served from the running agent's cache against
// the same unit without LoadCredential=. Numbers only, no thresholds; `npm run bench` runs it
// (BENCH_AGENT_OUT=FILE: the figures as JSON) and judges them:
//   npx vitest run --config bench/agent/vitest.config.mts
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, it } from "vitest";
import { buildAgent } from "../../helper/scripts/build-agent.mjs";
import { startFakeConnect, type FakeConnect } from "../../tests/connect/fake-connect.mjs";
import { bootScenario, describeE2E, repoRoot, type Scenario } from "../../tests/e2e/scenario.js";

const sizes = [1, 10, 30];
const rounds = Number(process.env["BENCH_ROUNDS"] ?? 3);
const warmRuns = Number(process.env["BENCH_WARM_RUNS"] ?? 21);
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
const mib = (kib: number) => Math.round((kib / 1024) * 10) / 10;
const classes = ["agent", "fetch", "systemd", "consumer"] as const;
type RssClass = (typeof classes)[number];
/** What rss-sampler.mjs prints, in KiB. */
interface Sampled {
  totalKiB: number;
  classes: Record<RssClass, { sumKiB: number; oneKiB: number }>;
}
interface Storm {
  wallMs: number;
  requests: number;
  sampled: Sampled;
}
// One more credential when warm: the same oneshot with no credential, with one from the agent,
// and with one plus the guard every agent consumer has.
const warmUnits = {
  plain: "bw-plain.service",
  credential: "bw-cred.service",
  guarded: "bw-guard.service",
} as const;
const warmScript = `#!/bin/sh
# bench-warm RUNS: start each unit in turn RUNS times; one line "unit nanoseconds" per start.
i=0
while [ "$i" -lt "$1" ]; do
  for u in ${Object.values(warmUnits).join(" ")}; do
    t0=$(date +%s%N); systemctl start "$u" || exit 1; t1=$(date +%s%N)
    echo "$u $((t1 - t0))"
  done
  i=$((i + 1))
done
`;

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
    const oneshot = (extra: string) =>
      `[Unit]\nStartLimitIntervalSec=0\nRequires=homelab-secrets-agent.socket\nAfter=homelab-secrets-agent.socket\n[Service]\nType=oneshot\n${extra}ExecStart=/bin/true\n`;
    await s.c.writeFile(`/etc/systemd/system/${warmUnits.plain}`, oneshot(""));
    await s.c.writeFile(`/etc/systemd/system/${warmUnits.credential}`, oneshot(`LoadCredential=secret:${socket}\n`));
    await s.c.writeFile(
      `/etc/systemd/system/${warmUnits.guarded}`,
      oneshot(`LoadCredential=secret:${socket}\nExecStartPre=/usr/local/libexec/homelab-secrets-agent --guard secret\n`),
    );
    for (const u of [warmUnits.credential, warmUnits.guarded])
      policy.units[u] = { files: { secret: { ref: "op://Agent/item-0/password" } } };
    await s.c.writeFile("/usr/local/bin/bench-warm", warmScript, "0755");
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
  async function storm(kind: "bf" | "ba", n: number, warm = false): Promise<Storm> {
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
      "StandardOutput=truncate:/run/bench-sampler.out",
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
    const sampled = JSON.parse((await s.c.cx(["cat", "/run/bench-sampler.out"])).stdout) as Sampled;
    return { wallMs, sampled, requests: server.requests.length };
  }

  /** Medians per start: [unit, ms], after one warm-up round (which also warms the agent). */
  async function warmCredential(): Promise<Record<keyof typeof warmUnits, number>> {
    await s.c.cx(["bench-warm", "1"]);
    const out = (await s.c.cx(["bench-warm", String(warmRuns)], { timeoutMs: 600_000 })).stdout;
    const times = (unit: string) =>
      out
        .split("\n")
        .filter((l) => l.startsWith(`${unit} `))
        .map((l) => Number(l.split(" ")[1]) / 1e6);
    const result = {} as Record<keyof typeof warmUnits, number>;
    for (const [key, unit] of Object.entries(warmUnits) as Array<[keyof typeof warmUnits, string]>) {
      const xs = times(unit);
      if (xs.length !== warmRuns) throw new Error(`${unit}: ${xs.length} timings, expected ${warmRuns}`);
      result[key] = Math.round(median(xs) * 10) / 10;
    }
    return result;
  }

  it("1/10/30 services: wall, peak RSS by process class, backend requests; one more credential when warm", async () => {
    const rows: Array<{
      services: number;
      delivery: "fetch" | "agent-cold" | "agent-warm";
      wallMs: number;
      requests: number;
      /** Medians over the rounds, MiB: per class the peak of its sum, and the largest single process. */
      peakMiB: Record<RssClass | "total", number>;
      oneMiB: Record<RssClass, number>;
    }> = [];
    const row = (services: number, delivery: (typeof rows)[number]["delivery"], runs: Storm[]) => {
      const per = (f: (x: Storm) => number) => median(runs.map(f));
      rows.push({
        services,
        delivery,
        wallMs: per((x) => x.wallMs),
        requests: per((x) => x.requests),
        peakMiB: {
          total: mib(per((x) => x.sampled.totalKiB)),
          ...(Object.fromEntries(classes.map((c) => [c, mib(per((x) => x.sampled.classes[c].sumKiB))])) as Record<RssClass, number>),
        },
        oneMiB: Object.fromEntries(classes.map((c) => [c, mib(per((x) => x.sampled.classes[c].oneKiB))])) as Record<RssClass, number>,
      });
    };
    for (const n of sizes) {
      for (const kind of ["bf", "ba"] as const) {
        const runs = [];
        for (let k = 0; k < rounds; k++) runs.push(await storm(kind, n));
        row(n, kind === "bf" ? "fetch" : "agent-cold", runs);
        if (kind === "ba") {
          const warm = [];
          for (let k = 0; k < rounds; k++) warm.push(await storm(kind, n, true));
          row(n, "agent-warm", warm);
        }
      }
    }
    await s.c.cx(["systemctl", "stop", ...Array.from({ length: max }, (_, i) => `${name("ba", i + 1)}.service`)], { allowFail: true });
    const warm = await warmCredential();
    const results = {
      systemd: s.systemd,
      rounds,
      items,
      warmRuns,
      rows,
      warm: {
        ...warm,
        credentialMs: Math.round((warm.credential - warm.plain) * 10) / 10,
        guardedMs: Math.round((warm.guarded - warm.plain) * 10) / 10,
      },
    };
    console.log(
      `boot storm under systemd ${s.systemd}, ${rounds} round(s) each, fake Connect on loopback, ${items} distinct items, services as root:`,
    );
    console.table(
      rows.map((r) => ({
        services: r.services,
        delivery: r.delivery,
        "wall ms": r.wallMs,
        "agent MiB (front end + Node)": r.peakMiB.agent,
        "fetch Σ MiB": r.peakMiB.fetch,
        "one fetch MiB": r.oneMiB.fetch,
        "systemd forks Σ MiB": r.peakMiB.systemd,
        "services Σ MiB": r.peakMiB.consumer,
        "all Σ MiB": r.peakMiB.total,
        "backend requests": r.requests,
      })),
    );
    console.log(`one more credential when warm (medians of ${warmRuns} starts): ${JSON.stringify(results.warm)}`);
    const out = process.env["BENCH_AGENT_OUT"];
    if (out) writeFileSync(out, `${JSON.stringify(results, null, 2)}\n`);
  }, 1_800_000);
});
