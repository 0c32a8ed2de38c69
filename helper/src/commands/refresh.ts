import { lstat } from "node:fs/promises";
import { join } from "node:path";
import type { Logger } from "../log.js";
import { compareWithDisk, type Difference } from "../refresh/compare.js";
import { runSystemctl, systemctlVerb, type OnChange } from "../refresh/systemctl.js";
import { renderOutputs } from "../render/outputs.js";
import { resolveFromSource } from "../resolve.js";
import { loadSpec, specOutputNames, specReferences } from "../spec.js";
import { chooseSource, type SourceOverrides } from "../sources/index.js";
import { assertSafeDirectory, removeFiles, staleTempFiles, writeFilesAtomically, type FileToWrite } from "../write.js";
import { specOwner } from "./fetch.js";

export interface RefreshOptions {
  readonly specFile: string;
  readonly overrides: SourceOverrides;
  readonly deadlineSeconds: number;
  readonly serialize: boolean;
  readonly lockPath?: string;
  /** Restart or reload these units when something changed; nothing when absent. */
  readonly onChange?: { readonly action: OnChange; readonly units: readonly string[] };
  readonly log: Logger;
  readonly signal?: AbortSignal;
  /** Runs systemctl (tests replace it); default: systemctl from PATH. */
  readonly systemctl?: (action: OnChange, units: readonly string[], log: Logger) => Promise<void>;
}

/** What a refresh found: the service not running, everything as fetched, or files rewritten. */
export type RefreshOutcome = "not-running" | "unchanged" | "changed";

export interface RefreshResult {
  readonly outcome: RefreshOutcome;
  readonly outputDir: string;
  readonly differences: readonly Difference[];
  /** The units systemctl was asked to restart or reload (empty when none). */
  readonly notified: readonly string[];
}

/**
 * Resolve a spec's references in one batch and compare what would be written with what is in
 * its outputDir. Nothing differs: nothing is written and nothing restarted. Something differs:
 * every output is rewritten (all or nothing), then the consumer is restarted or reloaded. A
 * stopped service (no outputDir, or none of its outputs in it) is left alone before the
 * backend is asked anything: a refresh never creates secrets.
 */
export async function runRefresh(options: RefreshOptions): Promise<RefreshResult> {
  const { log } = options;
  const spec = await loadSpec(options.specFile);
  const outputDir = spec.outputDir;
  const names = specOutputNames(spec);
  const notRunning = (why: string): RefreshResult => {
    log.info(`${spec.name}: ${why} (the service is not running); nothing refreshed, nothing restarted`);
    return { outcome: "not-running", outputDir, differences: [], notified: [] };
  };

  if ((await assertSafeDirectory(outputDir)).missing.length > 0) return notRunning(`${outputDir} does not exist`);
  if (!(await anyExists(names.map((n) => join(outputDir, n))))) return notRunning(`${outputDir} holds none of its outputs`);

  const owner = specOwner(spec);
  const refs = specReferences(spec);
  const sourceConfig = chooseSource(spec.source, options.overrides);
  const values = await resolveFromSource(sourceConfig, refs, {
    deadlineSeconds: options.deadlineSeconds,
    log,
    ...(options.signal ? { signal: options.signal } : {}),
    ...(options.serialize ? { lock: options.lockPath ? { path: options.lockPath } : {} } : {}),
  });
  const files: FileToWrite[] = renderOutputs(spec, values).map((output) => ({
    path: join(outputDir, output.name),
    content: output.content,
    mode: output.mode,
    owner,
  }));

  const differences = await compareWithDisk(files);
  if (differences.length === 0) {
    log.info(
      `${spec.name}: unchanged (${files.length} file(s) from ${refs.length} reference(s) via ${sourceConfig.type}); nothing written`,
    );
    return { outcome: "unchanged", outputDir, differences, notified: [] };
  }
  log.info(`${spec.name}: changed: ${differences.map((d) => `${d.name} (${d.reason})`).join(", ")}`);

  // No directory settings: a refresh never creates the outputDir (the service stopping meanwhile
  // fails the write instead) and never changes its owner or mode.
  await writeFilesAtomically(files, { log });
  await removeFiles(await staleTempFiles(outputDir, new Set(names)), log);
  log.info(`${spec.name}: rewrote ${files.length} file(s) in ${outputDir}`);

  const onChange = options.onChange;
  if (!onChange || onChange.units.length === 0) return { outcome: "changed", outputDir, differences, notified: [] };
  await (options.systemctl ?? runSystemctl)(onChange.action, onChange.units, log);
  log.info(`${spec.name}: systemctl ${systemctlVerb[onChange.action]} ${onChange.units.join(" ")} done`);
  return { outcome: "changed", outputDir, differences, notified: onChange.units };
}

async function anyExists(paths: readonly string[]): Promise<boolean> {
  for (const path of paths) {
    try {
      await lstat(path);
      return true;
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== "ENOENT") return true;
    }
  }
  return false;
}
