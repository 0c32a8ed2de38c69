import { constants } from "node:fs";
import type { Stats } from "node:fs";
import { lstat, open } from "node:fs/promises";
import { join } from "node:path";
import type { CacheSettings } from "../cache/fetch-cache.js";
import { configError } from "../errors.js";
import type { Logger } from "../log.js";
import { compareWithDisk, type Difference } from "../refresh/compare.js";
import { runSystemctl, systemctlVerb, type OnChange } from "../refresh/systemctl.js";
import { renderOutputs } from "../render/outputs.js";
import { resolveFromSource } from "../resolve.js";
import { loadSpec, specOutputNames, specReferences, type Spec } from "../spec.js";
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
  /**
   * --cache, as the secrets unit's fetch has it: every fresh success seals its values and drops
   * the cached-values marker. Never read: a refresh always asks the backend, and a failed one
   * falls back to nothing.
   */
  readonly cache?: Pick<CacheSettings, "dir" | "markerDir" | "creds" | "now">;
  /**
   * The throughAgent refresh unit's way: the rendered bytes are the fresh credentials systemd
   * loaded from the agent into $CREDENTIALS_DIRECTORY (read as `install` reads them), no
   * backend and no token. Not with `cache` (the agent keeps its own).
   */
  readonly fromCredentials?: boolean;
  /** Where $CREDENTIALS_DIRECTORY is read (tests); default: process.env. */
  readonly env?: NodeJS.ProcessEnv;
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
  const spec = await loadSpec(options.specFile);
  const outputDir = spec.outputDir;
  if ((await assertSafeDirectory(outputDir)).missing.length > 0) return skipped(spec, options.log, `${outputDir} does not exist`);
  if (!(await anyExists(specOutputNames(spec).map((n) => join(outputDir, n)))))
    return skipped(spec, options.log, `${outputDir} holds none of its outputs`);
  // The directory as the running service has it; another one later means it restarted or
  // stopped. Held open, so that a new directory cannot reuse its inode number.
  const directory = await open(outputDir, constants.O_RDONLY | constants.O_DIRECTORY);
  try {
    return await refreshRunning(spec, options, await directory.stat());
  } finally {
    await directory.close();
  }
}

const meanwhile = "the service stopped or restarted meanwhile; a restart fetches anew";

/** The refresh of a running service whose outputDir is `held`. */
async function refreshRunning(spec: Spec, options: RefreshOptions, held: Stats): Promise<RefreshResult> {
  const { log } = options;
  const outputDir = spec.outputDir;
  const { files, from, remember } = options.fromCredentials ? await fromAgent(spec, options) : await fromBackend(spec, options);

  const differences = await compareWithDisk(files);
  if (differences.length === 0) {
    log.info(`${spec.name}: unchanged (${files.length} file(s) from ${from}); nothing written`);
    // The files are what the backend says now, whatever the secrets unit wrote them from.
    await remember();
    return { outcome: "unchanged", outputDir, differences, notified: [] };
  }
  log.info(`${spec.name}: changed: ${differences.map((d) => `${d.name} (${d.reason})`).join(", ")}`);

  // No directory settings: a refresh never creates the outputDir and never changes its owner
  // or mode. The service stopping or restarting meanwhile (its secrets unit removing the
  // directory, or fetching into a new one) fails the write; that is no refresh failure.
  const replaced = async () => {
    const now = await lstat(outputDir).catch(() => undefined);
    return now?.ino !== held.ino || now.dev !== held.dev;
  };
  try {
    await writeFilesAtomically(files, { log });
  } catch (error) {
    if (await replaced()) return skipped(spec, log, `${outputDir} was removed or replaced while refreshing`, meanwhile);
    throw error;
  }
  await removeFiles(await staleTempFiles(outputDir, new Set(specOutputNames(spec))), log);
  log.info(`${spec.name}: rewrote ${files.length} file(s) in ${outputDir}`);
  await remember();

  const onChange = options.onChange;
  if (!onChange || onChange.units.length === 0) return { outcome: "changed", outputDir, differences, notified: [] };
  if (await replaced()) {
    log.info(`${spec.name}: ${outputDir} was replaced while refreshing (${meanwhile}); nothing restarted`);
    return { outcome: "changed", outputDir, differences, notified: [] };
  }
  await (options.systemctl ?? runSystemctl)(onChange.action, onChange.units, log);
  log.info(`${spec.name}: systemctl ${systemctlVerb[onChange.action]} ${onChange.units.join(" ")} done`);
  return { outcome: "changed", outputDir, differences, notified: onChange.units };
}

/** The files a refresh compares with the disk, where they came from, and what a success seals. */
interface Fresh {
  readonly files: readonly FileToWrite[];
  readonly from: string;
  readonly remember: () => Promise<void>;
}

/** One batch from the spec's backend, rendered; sealed in the cache with --cache. */
async function fromBackend(spec: Spec, options: RefreshOptions): Promise<Fresh> {
  const { log } = options;
  const refs = specReferences(spec);
  const sourceConfig = chooseSource(spec.source, options.overrides);
  const values = await resolveFromSource(sourceConfig, refs, {
    deadlineSeconds: options.deadlineSeconds,
    log,
    ...(options.signal ? { signal: options.signal } : {}),
    ...(options.serialize ? { lock: options.lockPath ? { path: options.lockPath } : {} } : {}),
  });
  // Loaded only with --cache, as fetch does. No reuse and no fallback: only remember() is used.
  const cache = options.cache
    ? (await import("../cache/fetch-cache.js")).openFetchCache(
        { ...options.cache, maxAgeSeconds: 0, reuseSeconds: 0 },
        { name: spec.name, source: sourceConfig, refs },
        log,
      )
    : undefined;
  const owner = specOwner(spec);
  const files = renderOutputs(spec, values).map((output) => ({
    path: join(spec.outputDir, output.name),
    content: output.content,
    mode: output.mode,
    owner,
  }));
  return {
    files,
    from: `${refs.length} reference(s) via ${sourceConfig.type}`,
    remember: async () => {
      await cache?.remember(values);
    },
  };
}

/** The agent's fresh answers, already rendered, as systemd loaded them for this unit. */
async function fromAgent(spec: Spec, options: RefreshOptions): Promise<Fresh> {
  if (options.cache) throw configError(`${spec.name}: --cache is not for --from-credentials (the agent keeps its own cache)`);
  const { filesFromCredentials } = await import("../agent/install.js");
  return { files: await filesFromCredentials(spec, options.env), from: "the credential agent", remember: async () => {} };
}

function skipped(spec: Spec, log: Logger, why: string, because = "the service is not running"): RefreshResult {
  log.info(`${spec.name}: ${why} (${because}); nothing refreshed, nothing restarted`);
  return { outcome: "not-running", outputDir: spec.outputDir, differences: [], notified: [] };
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
