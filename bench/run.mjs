#!/usr/bin/env node
// The benchmark suite: `npm run bench` (builds first). BENCH_QUICK=1 for a ~1 minute run.
// Writes docs/benchmarks.{json,svg,md} (or BENCH_OUT=DIR) and prints the table.
//
// Every figure is a median over repeated runs, interleaved round-robin with its baseline in
// the same run, so a busy machine slows both alike; ratios are what to read.
import { spawn, spawnSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync, mkdirSync, existsSync, accessSync, constants } from "node:fs";
import { availableParallelism, cpus, loadavg, release, tmpdir, totalmem } from "node:os";
import { dirname, join, resolve } from "node:path";
import { performance } from "node:perf_hooks";
import { fileURLToPath } from "node:url";
import { stableId, startFakeConnect } from "../tests/connect/fake-connect.mjs";
import { connectVault, mkdirp, serviceAccountToken, writeFileVault, writeSecretFile, writeSpec } from "./lib/fixtures.mjs";
import { gnuTime, liveChildren, measuredPid, readStatusKiB, rssMethod, runOnce, summarize } from "./lib/measure.mjs";
import { renderMarkdown, renderSvg, renderText } from "./lib/report.mjs";
import { benchCache, cacheBenchUnavailable } from "./cache.mjs";
import { benchRefresh } from "./refresh.mjs";

const root = resolve(dirname(fileURLToPath(import.meta.url)), "..");
const cli = join(root, "helper/dist/cli.js");
const node = process.execPath;
const quick = process.env.BENCH_QUICK === "1";
const config = {
  quick,
  coldRuns: quick ? 7 : 21,
  roundTripRuns: quick ? 2 : 7,
  stormRounds: quick ? 1 : 5,
  stormWarmup: !quick,
  stormSizes: [1, 10, 30],
  latencyMs: 50,
  agentStormRounds: quick ? 1 : 3,
  agentWarmRuns: quick ? 21 : 61,
};
const outDir = resolve(process.env.BENCH_OUT ?? join(root, "docs"));

const log = (message) => process.stderr.write(`bench: ${message}\n`);

// --- temp space: tmpfs like /run when possible ------------------------------------------------
function tempBase() {
  for (const dir of ["/dev/shm", tmpdir()]) {
    try {
      accessSync(dir, constants.W_OK);
      return dir;
    } catch {
      // next
    }
  }
  return tmpdir();
}
const tmp = mkdtempSync(join(tempBase(), "homelab-secrets-bench-"));
let fake;
let cleaned = false;
async function cleanup() {
  if (cleaned) return;
  cleaned = true;
  for (const child of liveChildren) child.kill("SIGKILL");
  await fake?.close().catch(() => undefined);
  rmSync(tmp, { recursive: true, force: true });
}
for (const signal of ["SIGINT", "SIGTERM"]) {
  process.once(signal, () => {
    void cleanup().then(() => process.exit(130));
  });
}

function machine() {
  const cpuinfo = readFileSync("/proc/cpuinfo", "utf8");
  const model = /^model name\s*:\s*(.+)$/m.exec(cpuinfo)?.[1]?.trim() ?? cpus()[0]?.model ?? "unknown";
  const meminfo = readFileSync("/proc/meminfo", "utf8");
  const memKiB = Number(/^MemTotal:\s+(\d+)/m.exec(meminfo)?.[1] ?? totalmem() / 1024);
  return {
    nproc: availableParallelism(),
    cpuModel: model,
    memoryGiB: Math.round((memKiB / 1048576) * 10) / 10,
    node: process.version,
    kernel: release(),
    date: new Date().toISOString(),
    loadAverageAtStart: loadavg().map((v) => Math.round(v * 100) / 100),
    rssMethod,
    tempDir: dirname(tmp),
  };
}

function check(result, variant) {
  const ok = variant.expectCodes ? variant.expectCodes.includes(result.code) : result.code === 0;
  if (!ok || (variant.untilLine && result.markMs === undefined && !variant.markOptional)) {
    throw new Error(
      `${variant.label}: exit ${result.code ?? result.signal}${variant.untilLine && result.markMs === undefined ? " (expected line not seen)" : ""}\n${result.stderr.slice(0, 2000)}`,
    );
  }
}

/** Run every variant `runs` times round-robin after one warm-up round; medians per variant. */
async function interleaved(variants, runs, before) {
  const samples = Object.fromEntries(variants.map((v) => [v.id, { wallMs: [], rssKiB: [], extra: [] }]));
  for (let round = -1; round < runs; round++) {
    for (const variant of variants) {
      await before?.(variant);
      variant.prepare?.();
      const result = await runOnce(variant.cmd, variant.args, {
        tmp,
        env: { ...process.env, ...variant.env },
        untilLine: variant.untilLine,
        killOnMark: variant.killOnMark,
        timeoutMs: 120_000,
      });
      check(result, variant);
      const extra = variant.after?.(result);
      if (round < 0) continue;
      const s = samples[variant.id];
      s.wallMs.push(variant.untilLine ? (result.markMs ?? result.wallMs) : result.wallMs);
      s.rssKiB.push(result.rssKiB);
      if (extra !== undefined) s.extra.push(extra);
    }
  }
  return variants.map((v) => ({
    id: v.id,
    label: v.label,
    group: v.group,
    command: [v.cmd === node ? "node" : v.cmd, ...v.args.map((a) => a.replace(tmp, "$TMP").replace(root + "/", ""))].join(" "),
    wallMs: summarize(samples[v.id].wallMs),
    rssMiB: summarize(samples[v.id].rssKiB.map((k) => (k === undefined ? undefined : k / 1024))),
    ...(samples[v.id].extra.length ? { extra: samples[v.id].extra[samples[v.id].extra.length - 1] } : {}),
  }));
}

// --- 1. cold start, peak RSS, growth, SDK -----------------------------------------------------
async function coldStart(connect) {
  const dir = mkdirp(join(tmp, "cold"));
  const vault = writeFileVault(dir, 1000);
  const fileSource = { type: "file", path: vault.path };
  const sizes = [1, 10, 100, 1000];
  const specs = {};
  const outs = {};
  for (const n of sizes) {
    outs[n] = join(dir, `out-${n}`);
    specs[n] = writeSpec(dir, `file-${n}`, { refs: vault.refs, count: n, source: fileSource, outputDir: outs[n] });
  }
  outs.env = join(dir, "out-env");
  specs.env = writeSpec(dir, "file-1000-env", { refs: vault.refs, count: 1000, source: fileSource, outputDir: outs.env, layout: "env" });
  outs.direct = join(dir, "out-direct");
  specs.direct = writeSpec(dir, "file-10-direct", { refs: vault.refs, count: 10, source: fileSource, outputDir: outs.direct });
  // A closed local port: bind nothing there. Port 9 (discard) is closed on any sane host.
  const token = writeSecretFile(join(dir, "op-token"), serviceAccountToken(9));
  const opOut = join(dir, "out-op");
  const opSpec = writeSpec(dir, "op-10", {
    refs: vault.refs,
    count: 10,
    source: { type: "onepassword", tokenFile: token },
    outputDir: opOut,
  });
  const clean = (path) => () => rmSync(path, { recursive: true, force: true });

  /** @type {any[]} */
  const variants = [
    { id: "node", group: "baseline", label: "node -e 0", cmd: node, args: ["-e", "0"] },
    ...sizes.map((n) => ({
      id: `fetch-${n}`,
      group: "file",
      secrets: n,
      label: `fetch, file source, ${n} secret${n > 1 ? "s" : ""}`,
      cmd: node,
      args: [cli, "fetch", "--spec", specs[n]],
      prepare: clean(outs[n]),
    })),
    {
      id: "fetch-1000-env",
      group: "file",
      secrets: 1000,
      label: "fetch, file source, 1000 secrets in one env file",
      cmd: node,
      args: [cli, "fetch", "--spec", specs.env],
      prepare: clean(outs.env),
    },
    {
      id: "fetch-connect-10",
      group: "connect",
      secrets: 10,
      label: "fetch, connect source, 10 secrets / 3 items (0 ms latency)",
      cmd: node,
      args: [cli, "fetch", "--spec", connect.spec],
      prepare: clean(connect.out),
    },
    {
      id: "http-fetch",
      group: "probe",
      label: "node: one GET with global fetch (probe)",
      cmd: node,
      args: [join(root, "bench/probes/http-get.mjs"), "fetch", `${connect.url}/v1/vaults`, connect.tokenFile],
    },
    {
      id: "http-node",
      group: "probe",
      label: "node: one GET with node:http (probe)",
      cmd: node,
      args: [join(root, "bench/probes/http-get.mjs"), "http", `${connect.url}/v1/vaults`, connect.tokenFile],
    },
    { id: "check", group: "nosdk", label: "check --spec (onepassword spec)", cmd: node, args: [cli, "check", "--spec", opSpec] },
    {
      id: "direct-10",
      group: "whatif",
      label: "what-if: fetch 10 with no CLI parser (probe)",
      cmd: node,
      args: [join(root, "bench/probes/direct-fetch.mjs"), specs.direct],
      prepare: clean(outs.direct),
    },
    {
      id: "sdk-import",
      group: "sdk",
      label: "node: import @1password/sdk (probe)",
      cmd: node,
      args: [join(root, "bench/probes/sdk.mjs"), "import"],
    },
    {
      id: "sdk-client",
      group: "sdk",
      label: "node: import SDK + createClient (probe)",
      cmd: node,
      args: [join(root, "bench/probes/sdk.mjs"), "client", token],
    },
    {
      id: "fetch-sdk",
      group: "sdk",
      label: "fetch, onepassword source, 10 secrets (to createClient failure)",
      cmd: node,
      args: [cli, "fetch", "--spec", opSpec, "--deadline", "5"],
      untilLine: /attempt 1 failed|rejected|authentication failed/,
      killOnMark: true,
      expectCodes: [75, 77],
    },
  ];
  log(`cold start: ${variants.length} variants × ${config.coldRuns} runs (+1 warm-up), interleaved`);
  const results = await interleaved(variants, config.coldRuns);
  rmSync(dir, { recursive: true, force: true });
  return results;
}

// --- 2. round trips via a local Connect server with 50 ms latency --------------------------------
/** The local Connect server (0 ms latency until the round-trip part sets it) and a spec for it. */
async function startConnect() {
  const dir = mkdirp(join(tmp, "connect"));
  const { vault, refs } = connectVault();
  const token = "bench-connect-token-0123456789";
  const tokenFile = writeSecretFile(join(dir, "connect-token"), token);
  fake = await startFakeConnect({ vault, token, latencyMs: 0 });
  const source = { type: "connect", host: fake.url, tokenFile };
  const out = join(dir, "out-batch");
  const spec = writeSpec(dir, "connect-10", { refs, count: 10, source, outputDir: out });
  // The same secrets by ID (op://<vault-id>/<item-id>/…), as copied from 1Password's "Copy Secret Reference".
  const idRefs = refs.map((ref) => {
    const [vault, item, ...rest] = ref.slice("op://".length).split("/");
    return `op://${stableId("vault", vault)}/${stableId("item", vault, item)}/${rest.join("/")}`;
  });
  const outIds = join(dir, "out-batch-ids");
  const specIds = writeSpec(dir, "connect-10-ids", { refs: idRefs, count: 10, source, outputDir: outIds });
  return { dir, refs, tokenFile, url: fake.url, out, spec, outIds, specIds };
}

async function roundTrips({ dir, refs, tokenFile, out, spec, outIds, specIds }) {
  let latency = config.latencyMs;
  fake.setLatency(latency);
  const perOut = join(dir, "out-per-secret");

  // One request's round trip as a client sees it (keep-alive, from this process).
  const rtts = [];
  for (let i = 0; i < 11; i++) {
    const t = performance.now();
    await (await fetch(`${fake.url}/heartbeat`)).text();
    if (i > 0) rtts.push(performance.now() - t);
  }
  const rttMs = summarize(rtts).median;

  const requestStats = () => {
    const list = fake.requests.slice();
    // Sequential depth: the longest chain of requests each starting after the previous ended.
    const depth = new Map();
    for (const r of list.sort((a, b) => a.start - b.start)) {
      let d = 1;
      for (const p of list) if (p !== r && p.end !== undefined && p.end <= r.start) d = Math.max(d, (depth.get(p) ?? 0) + 1);
      depth.set(r, d);
    }
    return { requests: list.length, sequential: latency === 0 ? undefined : Math.max(0, ...depth.values()) };
  };
  const cliConnect = ["--source", "connect", "--connect-host", fake.url, "--token-file", tokenFile];
  /** @type {any[]} */
  const variants = [
    {
      id: "batch-0ms",
      label: "this project: one fetch, 0 ms latency (cold start reference)",
      latency: 0,
      cmd: node,
      args: [cli, "fetch", "--spec", spec],
      prepare: () => rmSync(out, { recursive: true, force: true }),
    },
    {
      id: "batch",
      label: "this project: one fetch process (batched)",
      latency: config.latencyMs,
      cmd: node,
      args: [cli, "fetch", "--spec", spec],
      prepare: () => rmSync(out, { recursive: true, force: true }),
    },
    {
      id: "batch-ids",
      label: "this project: one fetch process, references by ID",
      latency: config.latencyMs,
      cmd: node,
      args: [cli, "fetch", "--spec", specIds],
      prepare: () => rmSync(outIds, { recursive: true, force: true }),
    },
    {
      id: "per-secret",
      label: "op-secret-manager style: one process, 3 requests per secret in sequence",
      latency: config.latencyMs,
      cmd: node,
      args: [join(root, "bench/strategies/per-secret.mjs"), "--host", fake.url, "--token-file", tokenFile, "--out", perOut, ...refs],
      prepare: () => {
        rmSync(perOut, { recursive: true, force: true });
        mkdirSync(perOut, { mode: 0o700 });
      },
    },
    {
      id: "shell-loop",
      label: "shell loop: one `read` process per secret (like `op read`)",
      latency: config.latencyMs,
      cmd: "/bin/sh",
      args: [
        "-c",
        `for r; do "$0" ${[cli, "read", ...cliConnect].map((a) => `'${a}'`).join(" ")} "$r" >/dev/null || exit 1; done`,
        node,
        ...refs,
      ],
    },
  ];
  for (const v of variants) v.after = () => requestStats();
  log(`round trips: ${variants.length} strategies × ${config.roundTripRuns} runs (+1 warm-up), latency ${config.latencyMs} ms`);
  const results = await interleaved(variants, config.roundTripRuns, (variant) => {
    latency = variant.latency;
    fake.setLatency(latency);
    fake.clearRequests();
  });
  await fake.close();
  fake = undefined;
  rmSync(dir, { recursive: true, force: true });
  return { rttMs, latencyMs: config.latencyMs, secrets: refs.length, items: 3, results };
}

// --- 3. boot storm --------------------------------------------------------------------------------
async function stormOnce(n, serialize, spec, round) {
  const base = mkdirp(join(tmp, "storm", `${round}-${n}-${serialize ? "s" : "p"}`));
  const env = { ...process.env, HOMELAB_SECRETS_LOCK: join(base, "fetch.lock") };
  const started = performance.now();
  const runs = [];
  const pids = [];
  for (let i = 0; i < n; i++) {
    const args = [cli, "fetch", "--spec", spec, "--output-dir", join(base, `out-${i}`), ...(serialize ? ["--serialize"] : [])];
    runs.push(runOnce(node, args, { tmp, env, timeoutMs: 600_000, onSpawn: (pid) => pids.push(pid) }));
  }
  // Sample the sum of the fetch processes' RSS every 10 ms.
  let peakSumKiB = 0;
  const measured = new Map();
  const sampler = setInterval(() => {
    let sum = 0;
    for (const pid of pids) {
      let target = measured.get(pid);
      if (target === undefined) {
        target = measuredPid(pid);
        if (target !== undefined) measured.set(pid, target);
      }
      if (target !== undefined) sum += readStatusKiB(target, "VmRSS") ?? 0;
    }
    peakSumKiB = Math.max(peakSumKiB, sum);
  }, 10);
  const results = await Promise.all(runs);
  clearInterval(sampler);
  const wallMs = performance.now() - started;
  for (const r of results) if (r.code !== 0) throw new Error(`storm fetch exited ${r.code}: ${r.stderr.slice(0, 1000)}`);
  rmSync(base, { recursive: true, force: true });
  return {
    wallMs,
    sumMaxRssMiB: results.reduce((a, r) => a + (r.rssKiB ?? 0), 0) / 1024,
    sampledPeakMiB: peakSumKiB / 1024,
    slowestMs: Math.max(...results.map((r) => r.wallMs)),
  };
}

async function bootStorm() {
  const dir = mkdirp(join(tmp, "storm-fixtures"));
  const vault = writeFileVault(dir, 10);
  const spec = writeSpec(dir, "storm-10", {
    refs: vault.refs,
    count: 10,
    source: { type: "file", path: vault.path },
    outputDir: join(dir, "unused"),
  });
  const configs = config.stormSizes.flatMap((n) => [false, true].map((serialize) => ({ n, serialize })));
  const samples = new Map(configs.map((c) => [c, []]));
  log(`boot storm: ${configs.length} configurations × ${config.stormRounds} rounds${config.stormWarmup ? " (+1 warm-up)" : ""}`);
  for (let round = config.stormWarmup ? -1 : 0; round < config.stormRounds; round++) {
    for (const c of configs) {
      const r = await stormOnce(c.n, c.serialize, spec, round);
      if (round >= 0) samples.get(c).push(r);
    }
  }
  rmSync(dir, { recursive: true, force: true });
  return configs.map((c) => {
    const list = samples.get(c);
    const pick = (key) => summarize(list.map((r) => r[key]));
    return {
      processes: c.n,
      serialize: c.serialize,
      wallMs: pick("wallMs"),
      slowestMs: pick("slowestMs"),
      sumMaxRssMiB: pick("sumMaxRssMiB"),
      sampledPeakMiB: pick("sampledPeakMiB"),
    };
  });
}

// --- 4. boot storm under real systemd: per-service fetch vs the credential agent ----------------
const agentStormNeeds = "needs root and systemd-nspawn";

/**
 * bench/agent/storm.test.ts in its own vitest run (systemd 252 in nspawn, as root): its figures,
 * or why it did not run. Never numbers it did not measure.
 */
async function agentStorm() {
  const hasNspawn = spawnSync("sh", ["-c", "command -v systemd-nspawn"], { stdio: "ignore" }).status === 0;
  if (process.platform !== "linux" || process.getuid?.() !== 0 || !hasNspawn) {
    log(`agent boot storm: skipped: ${agentStormNeeds}`);
    return { skipped: agentStormNeeds };
  }
  const out = join(tmp, "agent-storm.json");
  log(`agent boot storm: real systemd in nspawn, ${config.agentStormRounds} round(s), ${config.agentWarmRuns} warm starts`);
  const vitest = join(root, "node_modules/vitest/vitest.mjs");
  const env = {
    ...process.env,
    BENCH_AGENT_OUT: out,
    BENCH_ROUNDS: String(config.agentStormRounds),
    BENCH_WARM_RUNS: String(config.agentWarmRuns),
  };
  const output = [];
  const code = await new Promise((resolveCode) => {
    const child = spawn(node, [vitest, "run", "--config", "bench/agent/vitest.config.mts"], {
      cwd: root,
      env,
      stdio: ["ignore", "pipe", "pipe"],
    });
    liveChildren.add(child);
    for (const stream of [child.stdout, child.stderr])
      stream.on("data", (b) => {
        output.push(b);
        process.stderr.write(b);
      });
    child.on("close", (c) => {
      liveChildren.delete(child);
      resolveCode(c);
    });
  });
  if (existsSync(out)) return JSON.parse(readFileSync(out, "utf8"));
  const text = Buffer.concat(output).toString();
  const skipped = /SKIPPED real-systemd e2e "[^"]*": (.*?) \*\*\*/.exec(text)?.[1];
  if (code === 0 && skipped) return { skipped: `${agentStormNeeds} (${skipped})` };
  process.exitCode = 1;
  return { failed: `bench/agent/storm.test.ts exited ${code} without figures (see above)` };
}

// --- analysis ------------------------------------------------------------------------------------
/** The agent's targets, judged only on what was measured. */
function agentTargets(agent) {
  const why = agent.skipped ?? agent.failed;
  const rowOf = (n, delivery) => agent.rows?.find((r) => r.services === n && r.delivery === delivery);
  const oneFetch = rowOf(1, "fetch")?.oneMiB.fetch;
  const agent30 = Math.max(rowOf(30, "agent-cold")?.peakMiB.agent ?? NaN, rowOf(30, "agent-warm")?.peakMiB.agent ?? NaN);
  return [
    {
      id: "agent-rss",
      what: "30 services through the agent: the agent's processes (front end + Node) peak RSS ≤ 1.5× one `fetch` process",
      measured: why || !oneFetch ? undefined : agent30 / oneFetch,
      limit: 1.5,
      detail: why ? undefined : { agentMiB: agent30, oneFetchMiB: oneFetch },
    },
    {
      id: "agent-warm",
      what: "one more credential when warm: a unit start with one credential from the agent's cache vs the same unit without LoadCredential=",
      measured: why ? undefined : agent.warm.credentialMs,
      limit: 10,
      unit: "ms",
      detail: why ? undefined : agent.warm,
    },
  ].map((t) => ({ ...t, ...(why ? { skipped: why } : {}) }));
}

// --- 5. refresh of an unchanged service, 6. the sealed cache ----------------------------------
async function refreshSection() {
  log("refresh of an unchanged service");
  return { rows: await benchRefresh({ runs: quick ? 5 : 15, log: (m) => log(`refresh: ${m}`) }) };
}

async function cacheSection() {
  const why = cacheBenchUnavailable();
  if (why) {
    log(`sealed cache: skipped: ${why}`);
    return { skipped: why };
  }
  log("sealed cache: fetch --cache and a start on cached values with the backend down");
  return benchCache({ runs: quick ? 3 : 7, deadline: 3, log: (m) => log(`cache: ${m}`) });
}

/** Refresh and cache targets, judged only on what was measured. */
function refreshCacheTargets(refresh, cache) {
  const row = (id) => refresh.rows.find((r) => r.variant.startsWith(id));
  const unchanged = row("refresh");
  const fetchRow = row("fetch");
  const cacheRow = (id) => cache.rows?.find((r) => r.id === id);
  return [
    {
      id: "refresh-unchanged",
      what: "refresh of an unchanged service: backend requests ≤ one fetch's batch, no file written, no restart",
      measured: unchanged.requests,
      limit: fetchRow.requests,
      unit: "requests",
      extraPass: unchanged.filesWritten === 0 && unchanged.systemctlRuns === 0,
      detail: {
        wallMs: unchanged.wallMs.median,
        fetchWallMs: fetchRow.wallMs.median,
        filesWritten: unchanged.filesWritten,
        systemctlRuns: unchanged.systemctlRuns,
      },
    },
    {
      id: "cache-outage",
      what: "warm cache, backend refusing connections: time until the fetch succeeds ≤ deadline + one cold fetch",
      measured: cacheRow("refused-cached")?.median,
      limit: cache.skipped ? undefined : cache.deadline * 1000 + cacheRow("fetch").median,
      unit: "ms",
      ...(cache.skipped ? { skipped: cache.skipped } : {}),
    },
  ];
}

function analyse(cold, rt, storm, agent, refresh, cache) {
  const by = (id) => cold.find((r) => r.id === id);
  const node0 = by("node");
  const f10 = by("fetch-10");
  const ratio = (a, b) => (a !== undefined && b ? a / b : undefined);
  const sizes = [1, 10, 100, 1000].map((n) => ({ n, ms: by(`fetch-${n}`).wallMs.median }));
  // least-squares line through (n, ms)
  const mx = sizes.reduce((a, s) => a + s.n, 0) / sizes.length;
  const my = sizes.reduce((a, s) => a + s.ms, 0) / sizes.length;
  const slope = sizes.reduce((a, s) => a + (s.n - mx) * (s.ms - my), 0) / sizes.reduce((a, s) => a + (s.n - mx) ** 2, 0);
  const intercept = my - slope * mx;
  const ssTot = sizes.reduce((a, s) => a + (s.ms - my) ** 2, 0);
  const ssRes = sizes.reduce((a, s) => a + (s.ms - (intercept + slope * s.n)) ** 2, 0);
  const rtBy = (id) => rt.results.find((r) => r.id === id);
  const batch = rtBy("batch");
  const batch0 = rtBy("batch-0ms");
  const bound = batch0.wallMs.median + 2 * rt.rttMs;
  const targets = [
    {
      id: "wall",
      what: "fetch, file source, 10 secrets: wall time ≤ 1.5× `node -e 0`",
      measured: ratio(f10.wallMs.median, node0.wallMs.median),
      limit: 1.5,
    },
    {
      id: "rss",
      what: "fetch, file source, 10 secrets: peak RSS ≤ 1.3× `node -e 0`",
      measured: ratio(f10.rssMiB.median, node0.rssMiB.median),
      limit: 1.3,
    },
    {
      id: "connect",
      what: `10 secrets over 3 items via Connect at ${rt.latencyMs} ms: wall ≤ cold start + 2 round trips`,
      measured: batch.wallMs.median,
      limit: bound,
      unit: "ms",
      detail: {
        coldStartMs: batch0.wallMs.median,
        rttMs: rt.rttMs,
        roundTripsUsed: (batch.wallMs.median - batch0.wallMs.median) / rt.rttMs,
        sequentialRequests: batch.extra?.sequential,
        fileSourceColdStartMs: f10.wallMs.median,
      },
    },
    ...agentTargets(agent),
    ...refreshCacheTargets(refresh, cache),
  ].map(({ extraPass, ...t }) => ({ ...t, pass: t.measured !== undefined && t.measured <= t.limit && extraPass !== false }));
  const whatIf = by("direct-10");
  return {
    targets,
    ratios: Object.fromEntries(
      cold.map((r) => [r.id, { wall: ratio(r.wallMs.median, node0.wallMs.median), rss: ratio(r.rssMiB.median, node0.rssMiB.median) }]),
    ),
    growth: {
      points: sizes,
      msPerSecret: slope,
      interceptMs: intercept,
      r2: ssTot > 0 ? 1 - ssRes / ssTot : 1,
      from10to1000: ratio(by("fetch-1000").wallMs.median, f10.wallMs.median),
      extraMsPer1000: by("fetch-1000").wallMs.median - f10.wallMs.median,
      envFile1000Ms: by("fetch-1000-env").wallMs.median,
    },
    sdk: {
      wallCostMs: by("fetch-sdk").wallMs.median - by("fetch-10").wallMs.median,
      rssCostMiB: by("fetch-sdk").rssMiB.median - by("fetch-10").rssMiB.median,
      importMs: by("sdk-import").wallMs.median - node0.wallMs.median,
      importMiB: by("sdk-import").rssMiB.median - node0.rssMiB.median,
    },
    http: {
      fetchMs: by("http-fetch").wallMs.median - by("http-node").wallMs.median,
      fetchMiB: by("http-fetch").rssMiB.median - by("http-node").rssMiB.median,
      connectVsFileMs: by("fetch-connect-10").wallMs.median - f10.wallMs.median,
      connectVsFileMiB: by("fetch-connect-10").rssMiB.median - f10.rssMiB.median,
    },
    whatIf: {
      wall: ratio(whatIf.wallMs.median, node0.wallMs.median),
      rss: ratio(whatIf.rssMiB.median, node0.rssMiB.median),
      savedMs: f10.wallMs.median - whatIf.wallMs.median,
    },
    connect: {
      speedupVsPerSecret: ratio(rtBy("per-secret").wallMs.median, batch.wallMs.median),
      speedupVsShellLoop: ratio(rtBy("shell-loop").wallMs.median, batch.wallMs.median),
    },
    storm: {
      plain30: storm.find((s) => s.processes === 30 && !s.serialize),
      serial30: storm.find((s) => s.processes === 30 && s.serialize),
    },
  };
}

// --- main ------------------------------------------------------------------------------------
async function main() {
  if (!existsSync(cli)) throw new Error(`${cli} is missing; run "npm run bench" (it builds first)`);
  if (!gnuTime) log("GNU time not found: peak RSS falls back to polling /proc (install the 'time' package for exact figures)");
  const host = machine();
  log(
    `${host.nproc} CPUs (${host.cpuModel}), ${host.memoryGiB} GiB, node ${host.node}, load ${host.loadAverageAtStart.join(" ")}${quick ? ", QUICK" : ""}`,
  );
  const t0 = performance.now();
  const connect = await startConnect();
  const cold = await coldStart(connect);
  const rt = await roundTrips(connect);
  const storm = await bootStorm();
  const agent = await agentStorm();
  const refresh = await refreshSection();
  const cache = await cacheSection();
  host.loadAverageAtEnd = loadavg().map((v) => Math.round(v * 100) / 100);
  host.benchSeconds = Math.round((performance.now() - t0) / 1000);
  const analysis = analyse(cold, rt, storm, agent, refresh, cache);
  const results = {
    schema: 1,
    machine: host,
    config,
    coldStart: cold,
    roundTrips: rt,
    bootStorm: storm,
    agentStorm: agent,
    refresh,
    cache,
    analysis,
  };
  mkdirSync(outDir, { recursive: true });
  writeFileSync(join(outDir, "benchmarks.json"), `${JSON.stringify(results, null, 2)}\n`);
  writeFileSync(join(outDir, "benchmarks.svg"), renderSvg(results));
  writeFileSync(join(outDir, "benchmarks.md"), renderMarkdown(results));
  process.stdout.write(renderText(results));
  log(`wrote ${join(outDir, "benchmarks.{md,json,svg}")} in ${host.benchSeconds} s`);
}

try {
  await main();
} catch (error) {
  process.stderr.write(`bench: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}\n`);
  process.exitCode = 1;
} finally {
  await cleanup();
}
