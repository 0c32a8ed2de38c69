/**
 * What every way of running `homelab-secrets user` shares before writing: choosing the
 * caller's entries from the mapfile and resolving them in one batch.
 */
import { existsSync } from "node:fs";
import { dirname } from "node:path";
import { cantCreateError, configError, dataError } from "../errors.js";
import type { Logger } from "../log.js";
import { outputPath, parseMapfile, secretsDirectory, parseTags, selectEntries, type MapEntry, type TagFilter } from "../mapfile.js";
import { utf8 } from "../render/outputs.js";
import { resolveFromSource } from "../resolve.js";
import type { SourceConfig } from "../spec.js";

/** Who the files are for. */
export interface Caller {
  readonly user: string;
  readonly uid: number;
}

/** One mapfile entry of the caller and the file it becomes. */
export interface PlannedFile {
  readonly entry: MapEntry;
  /** Absolute and normalised. */
  readonly path: string;
}

/** --tags and --untagged as a filter. */
export function tagFilter(tags: string | undefined, untagged: boolean): TagFilter {
  return { tags: parseTags(tags), untagged };
}

/**
 * Parse the mapfile and pick the caller's entries. Any malformed line fails the run (65).
 * `privileged`: the caller may not read the mapfile, so problems on other users' lines are
 * reported by line number only.
 */
export function planEntries(text: string, file: string, caller: Caller, filter: TagFilter, privileged: boolean): PlannedFile[] {
  const { entries, problems } = parseMapfile(text, file);
  if (problems.length > 0) {
    const shown = problems.map((p) =>
      !privileged || p.user === caller.user ? p.message : `${file}:${p.line}: malformed line (another user's entry; details hidden)`,
    );
    throw dataError(`${shown.join("; ")}${shown.length > 1 ? ` (${shown.length} problems)` : ""}`);
  }
  const planned = selectEntries(entries, caller.user, filter).map((entry) => ({ entry, path: outputPath(entry.path, caller.uid) }));
  const byPath = new Map<string, PlannedFile>();
  for (const item of planned) {
    const first = byPath.get(item.path);
    if (first) throw dataError(`${file}:${item.entry.line}: ${item.path} is also written by line ${first.entry.line}`);
    byPath.set(item.path, item);
  }
  return planned;
}

/**
 * Relative entries go under /run/user/<uid>/, which only logind creates (a login session,
 * or lingering); a system service's account has none, and the writer, running as that
 * account, cannot create it under root's /run/user. Fail (73) before anything is fetched,
 * naming the first such line and the two fixes.
 */
export function requireRuntimeDirectory(planned: readonly PlannedFile[], file: string, caller: Caller): void {
  const relative = planned.find((p) => !p.entry.path.startsWith("/"));
  if (relative === undefined) return;
  const runtimeDir = dirname(secretsDirectory(caller.uid));
  if (existsSync(runtimeDir)) return;
  throw cantCreateError(
    `${file}:${relative.entry.line}: ${caller.user} has no ${runtimeDir} (no login session), so relative mapfile paths cannot be written: ` +
      `give absolute paths (e.g. under the service's RuntimeDirectory=) or run loginctl enable-linger ${caller.user}`,
  );
}

/** Resolve the planned entries in one batch (retries and the deadline are the resolver's). */
export async function resolvePlanned(
  planned: readonly PlannedFile[],
  sourceConfig: SourceConfig,
  token: string | undefined,
  options: { deadlineSeconds: number; log: Logger; signal?: AbortSignal; tokenPath: string; lock?: { path?: string } },
): Promise<{ path: string; value: Buffer }[]> {
  if (planned.length === 0) return [];
  if (sourceConfig.type !== "file" && token === undefined) {
    throw configError(`no token: ${options.tokenPath} does not exist (needed for the ${sourceConfig.type} source)`);
  }
  const values = await resolveFromSource(
    sourceConfig,
    planned.map((p) => p.entry.ref),
    {
      deadlineSeconds: options.deadlineSeconds,
      log: options.log,
      ...(options.signal ? { signal: options.signal } : {}),
      ...(token !== undefined ? { token } : {}),
      ...(options.lock ? { lock: options.lock } : {}),
    },
  );
  return planned.map((p) => ({ path: p.path, value: utf8(values.get(p.entry.ref.raw)!, p.entry.ref.raw) }));
}
