#!/usr/bin/env node
// Refresh of an unchanged service: what a timer tick costs. `node bench/refresh.mjs`
// (BENCH_QUICK=1: fewer runs). Builds nothing: run `npm run build` first.
//
// Against the fake Connect server (10 references over 3 items), interleaved round-robin in
// the same run: `node -e 0` (node's own start), a plain `fetch` of the same spec (into its own
// directory, --output-dir), and `refresh --restart` of the unchanged service (a recording
// systemctl first on PATH). Per variant: median wall time, Connect requests per run, and how
// many files each run wrote (inode or mtime changed) or how often systemctl ran.
import { chmodSync, mkdtempSync, readFileSync, readdirSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";
import { startFakeConnect } from "../tests/connect/fake-connect.mjs";
import { connectVault, mkdirp, writeSecretFile } from "./lib/fixtures.mjs";
import { median, runOnce, summarize } from "./lib/measure.mjs";

const root = resolve(dirname(fileURLToPath(import.meta.url)), "..");
const cli = join(root, "helper/dist/cli.js");
const token = "bench-refresh-token";

/** Files of `dir` by name: inode and mtime, to tell a rewrite from no write. */
function fileIds(dir) {
  let names = [];
  try {
    names = readdirSync(dir);
  } catch {
    return new Map();
  }
  return new Map(
    names.map((name) => {
      const s = statSync(join(dir, name), { bigint: true });
      return [name, `${s.ino}:${s.mtimeNs}`];
    }),
  );
}

/**
 * Run the benchmark and return its rows; `runs` per variant (default 15, BENCH_QUICK=1: 5).
 * @param {{ runs?: number, log?: (message: string) => void }} [options]
 */
export async function benchRefresh(options = {}) {
  const runs = options.runs ?? (process.env.BENCH_QUICK === "1" ? 5 : 15);
  const log = options.log ?? ((m) => process.stderr.write(`bench refresh: ${m}\n`));
  const tmp = mkdtempSync(join(tmpdir(), "homelab-secrets-bench-refresh-"));
  const { vault, refs } = connectVault();
  const fake = await startFakeConnect({ vault, token });
  try {
    const tokenFile = writeSecretFile(join(tmp, "token"), `${token}\n`);
    const out = join(tmp, "run", "app-secrets");
    const fetchOut = join(tmp, "run", "fetch-secrets");
    const spec = {
      version: 1,
      name: "app",
      outputDir: out,
      dirMode: "0750",
      source: { type: "connect", host: fake.url, tokenFile },
      files: Object.fromEntries(refs.map((ref, i) => [`s${String(i).padStart(2, "0")}`, { ref, mode: "0400" }])),
    };
    const specFile = join(tmp, "app.json");
    writeFileSync(specFile, JSON.stringify(spec, null, 1));
    const bin = mkdirp(join(tmp, "bin"));
    const calls = join(tmp, "systemctl.calls");
    writeFileSync(join(bin, "systemctl"), `#!/bin/sh\necho "$*" >>"${calls}"\n`);
    chmodSync(join(bin, "systemctl"), 0o755);
    const env = { PATH: `${bin}:${process.env.PATH ?? "/usr/bin:/bin"}`, HOME: tmp };

    const variants = [
      { name: "node -e 0", args: ["-e", "0"] },
      { name: "fetch (same spec)", args: [cli, "fetch", "--spec", specFile, "--output-dir", fetchOut], dir: fetchOut },
      { name: "refresh, unchanged", args: [cli, "refresh", "--spec", specFile, "--restart", "app.service"], dir: out },
    ];
    const first = await runOnce(process.execPath, [cli, "fetch", "--spec", specFile], { env, tmp });
    if (first.code !== 0) throw new Error(`the first fetch failed (${first.code}): ${first.stderr}`);
    const samples = variants.map(() => ({ wallMs: [], requests: [], written: [] }));
    for (let round = 0; round < runs + 1; round++) {
      for (const [i, variant] of variants.entries()) {
        const before = variant.dir ? fileIds(variant.dir) : undefined;
        fake.clearRequests();
        const r = await runOnce(process.execPath, variant.args, { env, tmp });
        if (r.code !== 0) throw new Error(`${variant.name} failed (${r.code}): ${r.stderr}`);
        if (round === 0) continue; // warm-up: page cache, the SDK's files
        samples[i].wallMs.push(r.wallMs);
        samples[i].requests.push(fake.requests.length);
        if (before) {
          const after = fileIds(variant.dir);
          samples[i].written.push([...after].filter(([n, id]) => before.get(n) !== id).length);
        }
      }
    }
    let systemctlRuns = 0;
    try {
      systemctlRuns = readFileSync(calls, "utf8").split("\n").filter(Boolean).length;
    } catch {
      systemctlRuns = 0;
    }
    log(`${runs} runs per variant, 10 references over 3 items, fake Connect`);
    return variants.map((variant, i) => ({
      variant: variant.name,
      wallMs: summarize(samples[i].wallMs),
      requests: median(samples[i].requests),
      filesWritten: variant.dir ? median(samples[i].written) : undefined,
      systemctlRuns: variant.name.startsWith("refresh") ? systemctlRuns : undefined,
    }));
  } finally {
    await fake.close();
    rmSync(tmp, { recursive: true, force: true });
  }
}

/** The rows as a text table, with each median's ratio to `node -e 0`. */
export function renderRefreshTable(rows) {
  const base = rows.find((r) => r.variant === "node -e 0")?.wallMs.median ?? NaN;
  const fetchMs = rows.find((r) => r.variant.startsWith("fetch"))?.wallMs.median ?? NaN;
  const header = ["variant", "median ms", "p25–p75 ms", "× node -e 0", "× fetch", "requests", "files written", "systemctl runs"];
  const body = rows.map((r) => [
    r.variant,
    r.wallMs.median.toFixed(1),
    `${r.wallMs.p25.toFixed(1)}–${r.wallMs.p75.toFixed(1)}`,
    (r.wallMs.median / base).toFixed(2),
    (r.wallMs.median / fetchMs).toFixed(2),
    String(r.requests),
    r.filesWritten === undefined ? "–" : String(r.filesWritten),
    r.systemctlRuns === undefined ? "–" : String(r.systemctlRuns),
  ]);
  const widths = header.map((h, i) => Math.max(h.length, ...body.map((row) => row[i].length)));
  const line = (cells) => cells.map((c, i) => c.padEnd(widths[i])).join("  ");
  return [line(header), line(widths.map((w) => "-".repeat(w))), ...body.map(line)].join("\n");
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? "").href) {
  const rows = await benchRefresh();
  process.stdout.write(`${renderRefreshTable(rows)}\n`);
  const refresh = rows.find((r) => r.variant.startsWith("refresh"));
  const fetchRow = rows.find((r) => r.variant.startsWith("fetch"));
  // The targets: one batch (as many requests as a fetch), no writes, no restart.
  if (refresh.requests !== fetchRow.requests || refresh.filesWritten !== 0 || refresh.systemctlRuns !== 0) {
    process.stderr.write("bench refresh: an unchanged refresh must cost one batch, write nothing and restart nothing\n");
    process.exitCode = 1;
  }
}
