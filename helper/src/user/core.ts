/**
 * What both ways of running `homelab-secrets user` share: choosing the caller's entries,
 * resolving them in one batch, and writing (or removing) the files as the caller.
 */
import { mkdir } from "node:fs/promises";
import { dirname, join } from "node:path";
import { cantCreateError, configError, dataError } from "../errors.js";
import type { Logger } from "../log.js";
import { checkWriterPath, outputPath, parseMapfile, parseTags, selectEntries, type MapEntry, type TagFilter } from "../mapfile.js";
import { utf8 } from "../render/outputs.js";
import { resolveReferences } from "../resolve.js";
import type { SourceConfig } from "../spec.js";
import { createSource } from "../sources/index.js";
import { assertSafeDirectory, removeFiles, writeFilesAtomically } from "../write.js";

export interface Caller {
  readonly user: string;
  readonly uid: number;
}

export interface PlannedFile {
  readonly entry: MapEntry;
  /** Absolute and normalised. */
  readonly path: string;
}

export const fileMode = 0o600;
export const dirMode = 0o700;

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

/** Resolve the planned entries in one batch (retries and the deadline are the resolver's). */
export async function resolvePlanned(
  planned: readonly PlannedFile[],
  sourceConfig: SourceConfig,
  token: string | undefined,
  options: { deadlineSeconds: number; log: Logger; signal?: AbortSignal; tokenPath: string },
): Promise<{ path: string; value: Buffer }[]> {
  if (planned.length === 0) return [];
  if (sourceConfig.type !== "file" && token === undefined) {
    throw configError(`no token: ${options.tokenPath} does not exist (needed for the ${sourceConfig.type} source)`);
  }
  const source = await createSource(sourceConfig, { log: options.log, ...(token !== undefined ? { token } : {}) });
  const values = await resolveReferences(
    source,
    planned.map((p) => p.entry.ref),
    { deadlineSeconds: options.deadlineSeconds, log: options.log, ...(options.signal ? { signal: options.signal } : {}) },
  );
  return planned.map((p) => ({ path: p.path, value: utf8(values.get(p.entry.ref.raw)!, p.entry.ref.raw) }));
}

/** A token file's text: one trailing newline dropped (agenix and editors add one). */
export function tokenText(text: string, path: string): string {
  const token = text.replace(/\r?\n$/, "");
  if (token.length === 0) throw configError(`token ${path} is empty`);
  return token;
}

/**
 * Write every file as the current user, or none: paths are checked again, missing
 * directories are created 0700, symlinks in the path are refused (a root-owned one
 * excepted, see assertSafeDirectory), a symlink at the file itself is replaced, not followed.
 */
export async function writeUserFiles(files: readonly { path: string; value: Uint8Array }[], uid: number, log: Logger): Promise<void> {
  for (const file of files) {
    const problem = checkWriterPath(file.path, uid);
    if (problem) throw cantCreateError(`refusing to write: ${problem}`);
  }
  for (const directory of new Set(files.map((f) => dirname(f.path)))) await createMissingDirectories(directory, uid);
  await writeFilesAtomically(
    files.map((f) => ({ path: f.path, content: f.value, mode: fileMode })),
    { log },
  );
}

export async function removeUserFiles(paths: readonly string[], uid: number, log: Logger): Promise<number> {
  for (const path of paths) {
    const problem = checkWriterPath(path, uid);
    if (problem) throw cantCreateError(`refusing to remove: ${problem}`);
  }
  const present: string[] = [];
  for (const path of paths) {
    // Never walk through a symlinked directory to unlink something elsewhere.
    const { missing } = await assertSafeDirectory(dirname(path));
    if (missing.length === 0) present.push(path);
  }
  return removeFiles(present, log);
}

async function createMissingDirectories(directory: string, uid: number): Promise<void> {
  const { missing } = await assertSafeDirectory(directory);
  let current = directory;
  for (let i = 0; i < missing.length; i++) current = dirname(current);
  for (const part of missing) {
    current = join(current, part);
    try {
      await mkdir(current, { mode: dirMode });
    } catch (error) {
      const code = (error as NodeJS.ErrnoException).code;
      if (code === "EEXIST") continue;
      const hint = current === `/run/user/${uid}` ? " (it is created by systemd-logind for a login session)" : "";
      throw cantCreateError(`cannot create directory ${current}: ${code ?? "error"}${hint}`, error);
    }
  }
  // Created or not, what is there now must be safe (a race could have planted a link).
  await assertSafeDirectory(directory);
}
