#!/usr/bin/env node
// What `fetch --cache` costs and how long a start on cached values takes: medians over N runs
// (BENCH_RUNS, default 7; BENCH_QUICK=1: 3) of the built CLI against the fake Connect server,
// with a temporary systemd-creds host key (SYSTEMD_CREDENTIAL_SECRET) and cache directory.
//
//   node bench/cache.mjs            # after npm run build; needs systemd-creds (root)
//
// With the backend down the helper retries until --deadline (BENCH_DEADLINE, default 3 s here;
// 45 s in the units) before it falls back: those rows measure deadline + fallback.
import { spawn } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync, mkdirSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { performance } from "node:perf_hooks";
import { fileURLToPath } from "node:url";
import { startFakeConnect } from "../tests/connect/fake-connect.mjs";

const root = resolve(dirname(fileURLToPath(import.meta.url)), "..");
const cli = join(root, "helper/dist/cli.js");
const runs = Number(process.env.BENCH_RUNS ?? (process.env.BENCH_QUICK === "1" ? 3 : 7));
const deadline = Number(process.env.BENCH_DEADLINE ?? 3);
const token = "bench-cache-token";
const refs = 5;

const tmp = mkdtempSync(join(tmpdir(), "homelab-secrets-bench-cache-"));
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
  return { spec, env, args, cache, dir };
}

/**
 * `runs` rounds over `cases` ({ label, make, expectCode? }), round-robin, so a busy machine
 * slows every case alike; one row per case.
 */
async function measureAll(cases) {
  const times = cases.map(() => []);
  for (let i = 0; i < runs; i++) {
    for (const [k, c] of cases.entries()) {
      const { args, env } = await c.make();
      const r = await timeRun(args, env);
      if (r.code !== (c.expectCode ?? 0)) throw new Error(`${c.label}: exit ${r.code}, expected ${c.expectCode ?? 0}\n${r.stderr}`);
      times[k].push(r.ms);
    }
  }
  return cases.map((c, k) => ({ label: c.label, median: median(times[k]), min: Math.min(...times[k]), max: Math.max(...times[k]) }));
}
const measure = async (label, make, expectCode = 0) => (await measureAll([{ label, make, expectCode }]))[0];

const rows = [];
let fake;
try {
  rows.push(await measure("node -e 0", () => ({ args: ["-e", "0"], env: {} })));

  fake = await startFakeConnect({ vault, token });
  const up = setup("up", fake.port);
  rows.push(await measure("fetch, Connect up (no cache)", () => ({ args: up.args(), env: up.env })));
  rows.push(await measure("fetch --cache, Connect up (resolve + seal)", () => ({ args: up.args(up.cache), env: up.env })));
  rows.push(
    await measure("fetch --cache --cache-reuse 60 (decrypt, no request)", () => ({
      args: up.args([...up.cache, "--cache-reuse", "60"]),
      env: up.env,
    })),
  );

  // Backend down: warm a cache for the same host:port while a server answers there, then take it away.
  const refused = await refusedPort();
  const r = setup("refused", refused);
  const warmServer = await startFakeConnect({ vault, token, port: refused });
  const warmed = await timeRun(r.args(r.cache), r.env);
  await warmServer.close();
  if (warmed.code !== 0) throw new Error(`warming the refused case failed:\n${warmed.stderr}`);
  rows.push(
    await measure(`fetch --cache, connection refused (deadline ${deadline} s) → cached`, () => ({ args: r.args(r.cache), env: r.env })),
  );
  rows.push(await measure(`fetch, connection refused (deadline ${deadline} s) → 75`, () => ({ args: r.args(), env: r.env }), 75));

  const holePort = await refusedPort();
  const h = setup("blackhole", holePort);
  const warmHole = await startFakeConnect({ vault, token, port: holePort });
  const warmedHole = await timeRun(h.args(h.cache), h.env);
  await warmHole.close();
  if (warmedHole.code !== 0) throw new Error(`warming the black-hole case failed:\n${warmedHole.stderr}`);
  const hole = await blackHoleOn(holePort);
  try {
    rows.push(
      await measure(`fetch --cache, black-holed backend (deadline ${deadline} s) → cached`, () => ({ args: h.args(h.cache), env: h.env })),
    );
  } finally {
    await hole.close();
  }
} finally {
  await fake?.close();
  rmSync(tmp, { recursive: true, force: true });
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

const width = Math.max(...rows.map((r) => r.label.length));
console.log(`fetch --cache, ${refs} references, medians over ${runs} runs (ms)`);
console.log(`${"".padEnd(width)}  ${"median".padStart(8)}  ${"min".padStart(8)}  ${"max".padStart(8)}`);
for (const row of rows) {
  console.log(
    `${row.label.padEnd(width)}  ${row.median.toFixed(0).padStart(8)}  ${row.min.toFixed(0).padStart(8)}  ${row.max.toFixed(0).padStart(8)}`,
  );
}
