import { join } from "node:path";
import type { CacheSettings } from "../cache/fetch-cache.js";
import { lookupGid, lookupUid, primaryGidOf } from "../accounts.js";
import type { Logger } from "../log.js";
import { renderOutputs } from "../render/outputs.js";
import { resolveFromSource } from "../resolve.js";
import { loadSpec, specOutputNames, specReferences, type Spec } from "../spec.js";
import { chooseSource, type SourceOverrides } from "../sources/index.js";
import { removeFiles, staleTempFiles, writeFilesAtomically, type Owner } from "../write.js";

export interface FetchOptions {
  readonly specFile: string;
  readonly overrides: SourceOverrides;
  readonly deadlineSeconds: number;
  readonly serialize: boolean;
  readonly lockPath?: string;
  /** Write somewhere else than the spec's outputDir (the demo uses this). */
  readonly outputDir?: string;
  readonly log: Logger;
  readonly signal?: AbortSignal;
  /** --cache: keep the values sealed on disk and stand in with them for a temporary failure. */
  readonly cache?: CacheSettings;
}

export interface FetchResult {
  readonly outputDir: string;
  readonly written: string[];
  readonly references: number;
  /** Where the values came from: the backend, or the cache (reuse window, or a failed backend). */
  readonly from: "backend" | "reuse" | "fallback";
}

/** Resolve every reference of a spec, then write all of its outputs — or nothing. */
export async function runFetch(options: FetchOptions): Promise<FetchResult> {
  const { log } = options;
  const spec = await loadSpec(options.specFile);
  const outputDir = options.outputDir ?? spec.outputDir;
  const owner = specOwner(spec);
  const refs = specReferences(spec);
  const sourceConfig = chooseSource(spec.source, options.overrides);

  // Loaded only with --cache: a boot without it pays nothing for the cache's modules.
  const cache = options.cache
    ? (await import("../cache/fetch-cache.js")).openFetchCache(options.cache, { name: spec.name, source: sourceConfig, refs }, log)
    : undefined;

  let from: FetchResult["from"] = "backend";
  let fallbackReason = "";
  let ageMs = 0;
  let values: Map<string, string> | undefined;
  const reused = await cache?.reuse();
  if (reused) {
    ({ values, ageMs } = reused);
    from = "reuse";
  } else {
    try {
      values = await resolveFromSource(sourceConfig, refs, {
        deadlineSeconds: options.deadlineSeconds,
        log,
        ...(options.signal ? { signal: options.signal } : {}),
        ...(options.serialize ? { lock: options.lockPath ? { path: options.lockPath } : {} } : {}),
      });
    } catch (error) {
      if (!cache) throw error;
      ({ values, ageMs } = await cache.fallback(error, options.signal));
      from = "fallback";
      fallbackReason = (error as Error).message;
    }
  }

  const outputs = renderOutputs(spec, values);
  const files = outputs.map((output) => ({ path: join(outputDir, output.name), content: output.content, mode: output.mode, owner }));
  await writeFilesAtomically(files, { createDirs: outputDirectorySettings(spec, owner), log });
  await removeFiles(await staleTempFiles(outputDir, new Set(specOutputNames(spec))), log);
  const via = from === "backend" ? sourceConfig.type : "the cache";
  log.info(`${spec.name}: wrote ${files.length} file(s) to ${outputDir} from ${refs.length} reference(s) via ${via}`);
  if (from === "backend") await cache?.remember(values);
  if (from === "fallback") await cache?.markCached(ageMs, fallbackReason);
  return { outputDir, written: files.map((f) => f.path), references: refs.length, from };
}

/**
 * The spec's owner and group as ids. Without either, files belong to whoever runs the
 * helper (a DynamicUser= service fetching for itself) and nothing is chowned.
 */
export function specOwner(spec: Spec): Owner | undefined {
  if (spec.owner === undefined && spec.group === undefined) return undefined;
  const uid = spec.owner === undefined ? process.geteuid!() : lookupUid(spec.owner);
  const gid = spec.group !== undefined ? lookupGid(spec.group) : (primaryGidOf(uid) ?? process.getegid!());
  return { uid, gid };
}

/**
 * How the writer may create or take over a spec's outputDir: its mode and owner, and which
 * existing directory it may re-own (the unit's RuntimeDirectory=, or one holding only this
 * spec's outputs). Every command that writes a spec's outputs uses this.
 */
export function outputDirectorySettings(spec: Spec, owner: Owner | undefined, env: NodeJS.ProcessEnv = process.env) {
  return {
    mode: spec.dirMode ?? 0o700,
    owner,
    keepExisting: spec.dirMode === undefined && spec.owner === undefined,
    adopt: { runtimeDirectories: runtimeDirectories(env), outputNames: new Set(specOutputNames(spec)) },
  };
}

/** systemd sets $RUNTIME_DIRECTORY to the unit's RuntimeDirectory= paths, colon-separated. */
function runtimeDirectories(env: NodeJS.ProcessEnv = process.env): string[] {
  return (env["RUNTIME_DIRECTORY"] ?? "").split(":").filter((d) => d.startsWith("/"));
}
