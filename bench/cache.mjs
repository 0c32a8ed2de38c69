#!/usr/bin/env node
// What `fetch --cache` costs and how long a start on cached values takes: medians over N runs
// (BENCH_RUNS, default 7; BENCH_QUICK=1: 3) of the built CLI against the fake Connect server,
// with a temporary systemd-creds host key (SYSTEMD_CREDENTIAL_SECRET) and cache directory.
//
//   node bench/cache.mjs            # after npm run build; needs systemd-creds (root)
//
// `npm run bench` runs it as one of its sections (benchCache below).
//
// With the backend down the helper retries until --deadline (BENCH_DEADLINE, default 3 s here;
// 45 s in the units) before it falls back: those rows measure deadline + fallback.
import { spawn, spawnSync } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync, mkdirSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { performance } from "node:perf_hooks";
import { fileURLToPath, pathToFileURL } from "node:url";
import { startFakeConnect } from "../tests/connect/fake-connect.mjs";

const root = resolve(dirname(fileURLToPath(import.meta.url)), "..");
const cli = join(root, "helper/dist/cli.js");
const token = "bench-cache-token";
const refs = 5;
const vault = {
  vaults: {
    Bench: { items: Object.fromEntries(Array.from({ length: refs }, (_, i) => [`item${i}`, { fields: { password: `value-${i}` } }])) },
  },
};

/** Run once; resolves with wall-clock ms and the exit code. */
function timeRun(args, env = {}) {
  return new Promise((resolvePromise, reject) => {
    const started = performance.now();
    const child = spawn(process.execPath, args, { stdio: ["ignore", "ignore", "pipe"], env: { ...process.env, ...env } });
    let stderr = "";
    child.stderr.on("data", (b) => (stderr += b));
    child.on("error", reject);
    child.on("close", (code) => resolvePromise({ ms: performance.now() - started, code, stderr }));
  });
}

const median = (xs) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
};

/** A port nothing listens on: connection refused. */
async function refusedPort() {
  const server = createServer();
  await new Promise((r) => server.listen(0, "127.0.0.1", r));
  const { port } = server.address();
  await new Promise((r) => server.close(r));
  return port;
}

/** A port that accepts connections and never answers: a black-holed backend as TCP sees it. */
async function blackHoleOn(port) {
  const sockets = new Set();
  const server = createServer((socket) => {
    sockets.add(socket);
    socket.on("error", () => {});
  });
  await new Promise((r) => server.listen(port, "127.0.0.1", r));
  return {
    close: () => {
      for (const s of sockets) s.destroy();
      return new Promise((r) => server.close(r));
    },
  };
}

/** Why this section cannot run here, or undefined. */
export function cacheBenchUnavailable() {
  if (process.getuid?.() !== 0) return "needs root (systemd-creds)";
  const probe = spawnSync("systemd-creds", ["--version"], { stdio: "ignore" });
  if (probe.error || probe.status !== 0) return "needs systemd-creds";
  return undefined;
}

/**
 * The sealed cache's costs, medians over `runs` interleaved rounds: fetch with and without
 * --cache and the reuse path against `node -e 0` (Connect up), then a warm cache with the
 * backend refused or black-holed until the deadline against the same fetch failing with 75.
 *
 * @param {{ runs?: number, deadline?: number, log?: (message: string) => void }} [options]
 */
export async function benchCache(options = {}) {
  const runs = options.runs ?? Number(process.env.BENCH_RUNS ?? (process.env.BENCH_QUICK === "1" ? 3 : 7));
  const deadline = options.deadline ?? Number(process.env.BENCH_DEADLINE ?? 3);
  const log = options.log ?? ((m) => process.stderr.write(`bench cache: ${m}\n`));
  const tmp = mkdtempSync(join(tmpdir(), "homelab-secrets-bench-cache-"));

  function setup(label, port) {
    const dir = join(tmp, label);
    mkdirSync(dir, { mode: 0o700 });
    const spec = join(dir, "spec.json");
    writeFileSync(
      spec,
      JSON.stringify({
        version: 1,
        name: "bench",
        outputDir: join(dir, "out"),
        source: { type: "connect", host: `http://127.0.0.1:${port}` },
        files: Object.fromEntries(Array.from({ length: refs }, (_, i) => [`s${i}`, { ref: `op://Bench/item${i}/password` }])),
      }),
    );
    const tokenFile = join(dir, "token");
    writeFileSync(tokenFile, token, { mode: 0o600 });
    const env = { SYSTEMD_CREDENTIAL_SECRET: join(dir, "credential.secret") };
    const args = (extra = []) => [cli, "fetch", "--spec", spec, "--token-file", tokenFile, "--deadline", String(deadline), ...extra];
    const cache = ["--cache", "--cache-dir", join(dir, "cache"), "--cache-marker-dir", join(dir, "markers")];
    return { env, args, cache };
  }

  /** `runs` rounds over `cases` ({ id, label, args, env, expectCode? }), round-robin: a busy machine slows every case alike. */
  async function measureAll(cases) {
    const times = cases.map(() => []);
    for (let i = 0; i < runs; i++) {
      for (const [k, c] of cases.entries()) {
        const r = await timeRun(c.args, c.env);
        if (r.code !== (c.expectCode ?? 0)) throw new Error(`${c.label}: exit ${r.code}, expected ${c.expectCode ?? 0}\n${r.stderr}`);
        times[k].push(r.ms);
      }
    }
    return cases.map((c, k) => ({
      id: c.id,
      label: c.label,
      median: median(times[k]),
      min: Math.min(...times[k]),
      max: Math.max(...times[k]),
    }));
  }

  async function warm(s, port) {
    const server = await startFakeConnect({ vault, token, port });
    const warmed = await timeRun(s.args(s.cache), s.env);
    await server.close();
    if (warmed.code !== 0) throw new Error(`warming a cache failed:\n${warmed.stderr}`);
  }

  const rows = [];
  let fake;
  let hole;
  try {
    log(`${runs} interleaved rounds, ${refs} references, deadline ${deadline} s`);
    fake = await startFakeConnect({ vault, token });
    const up = setup("up", fake.port);
    rows.push(
      ...(await measureAll([
        { id: "node", label: "node -e 0", args: ["-e", "0"], env: {} },
        { id: "fetch", label: "fetch, Connect up (no cache)", args: up.args(), env: up.env },
        { id: "fetch-cache", label: "fetch --cache, Connect up (resolve + seal)", args: up.args(up.cache), env: up.env },
        {
          id: "fetch-reuse",
          label: "fetch --cache --cache-reuse 60 (decrypt, no request)",
          args: up.args([...up.cache, "--cache-reuse", "60"]),
          env: up.env,
        },
      ])),
    );

    // Backend down: warm a cache for the same host:port while a server answers there, then take it away.
    const refused = await refusedPort();
    const r = setup("refused", refused);
    await warm(r, refused);
    const holePort = await refusedPort();
    const h = setup("blackhole", holePort);
    await warm(h, holePort);
    hole = await blackHoleOn(holePort);
    rows.push(
      ...(await measureAll([
        {
          id: "refused-cached",
          label: `fetch --cache, connection refused (deadline ${deadline} s) → cached`,
          args: r.args(r.cache),
          env: r.env,
        },
        { id: "refused-75", label: `fetch, connection refused (deadline ${deadline} s) → 75`, args: r.args(), env: r.env, expectCode: 75 },
        {
          id: "blackhole-cached",
          label: `fetch --cache, black-holed backend (deadline ${deadline} s) → cached`,
          args: h.args(h.cache),
          env: h.env,
        },
      ])),
    );
    return { runs, deadline, references: refs, rows };
  } finally {
    await hole?.close();
    await fake?.close();
    rmSync(tmp, { recursive: true, force: true });
  }
}

/** The rows as a text table. */
export function renderCacheTable(result) {
  const width = Math.max(...result.rows.map((r) => r.label.length));
  const lines = [`${"".padEnd(width)}  ${"median".padStart(8)}  ${"min".padStart(8)}  ${"max".padStart(8)}`];
  for (const row of result.rows) {
    lines.push(
      `${row.label.padEnd(width)}  ${row.median.toFixed(0).padStart(8)}  ${row.min.toFixed(0).padStart(8)}  ${row.max.toFixed(0).padStart(8)}`,
    );
  }
  return lines.join("\n");
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? "").href) {
  const why = cacheBenchUnavailable();
  if (why) {
    process.stderr.write(`bench cache: skipped: ${why}\n`);
    process.exitCode = 1;
  } else {
    const result = await benchCache();
    console.log(`fetch --cache, ${result.references} references, medians over ${result.runs} runs (ms)`);
    console.log(renderCacheTable(result));
  }
}
