#!/usr/bin/env node
// Re-render docs/benchmarks.{md,svg} from docs/benchmarks.json without measuring again
// (after a wording change in lib/report.mjs). `npm run bench` is what produces new figures.
import { readFileSync, writeFileSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { renderMarkdown, renderSvg } from "./lib/report.mjs";

const outDir = resolve(process.env.BENCH_OUT ?? join(dirname(fileURLToPath(import.meta.url)), "..", "docs"));
const results = JSON.parse(readFileSync(join(outDir, "benchmarks.json"), "utf8"));
writeFileSync(join(outDir, "benchmarks.svg"), renderSvg(results));
writeFileSync(join(outDir, "benchmarks.md"), renderMarkdown(results));
process.stderr.write(`bench: re-rendered ${outDir}/benchmarks.{md,svg}\n`);
