import { replaceControl } from "./log.js";
import { posix } from "node:path";
import { dataError, usageError } from "./errors.js";
import { parseReference, type SecretReference } from "./reference.js";
import { maxOutputNameLength } from "./spec.js";

/**
 * op-secret-manager's mapfile: one entry per line, `<user> <op://ref> <path> [tag,tag]`.
 * Lines are trimmed; blank lines and lines starting with `#` are skipped (no inline
 * comments); fields are split on any run of whitespace. Unlike op-secret-manager, a line
 * that is not a valid entry is an error naming FILE:LINE instead of being skipped.
 */
export interface MapEntry {
  readonly line: number;
  readonly user: string;
  readonly ref: SecretReference;
  /** As written: absolute, or relative to /run/user/<uid>/secrets/. */
  readonly path: string;
  /** Trimmed, empties dropped; empty means "untagged". */
  readonly tags: readonly string[];
}

export interface MapfileProblem {
  readonly line: number;
  /** The first field, when the line has one: whose line it is. */
  readonly user: string | undefined;
  /** Without the line's content beyond the failing field: safe to show that line's user. */
  readonly message: string;
}

export interface ParsedMapfile {
  readonly entries: readonly MapEntry[];
  readonly problems: readonly MapfileProblem[];
}

/** Parse every line; problems are collected, not thrown, so callers can report them all. */
export function parseMapfile(text: string, file: string): ParsedMapfile {
  const entries: MapEntry[] = [];
  const problems: MapfileProblem[] = [];
  const lines = text.split("\n");
  for (const [index, raw] of lines.entries()) {
    const lineNo = index + 1;
    const line = raw.trim();
    if (line === "" || line.startsWith("#")) continue;
    const fields = line.split(/\s+/);
    const user = fields[0];
    const problem = (message: string) => problems.push({ line: lineNo, user, message: `${file}:${lineNo}: ${message}` });
    if (fields.length !== 3 && fields.length !== 4) {
      problem(
        `expected 3 or 4 fields "<user> <op://ref> <path> [tag,tag]", found ${fields.length}` +
          (fields.length > 4 ? " (tags are comma-separated without spaces; paths cannot contain spaces)" : ""),
      );
      continue;
    }
    const [, refText = "", path = "", tagText] = fields as [string, string, string, string | undefined];
    let ref: SecretReference;
    try {
      ref = parseReference(refText, `${file}:${lineNo}`);
    } catch (error) {
      problems.push({ line: lineNo, user, message: (error as Error).message });
      continue;
    }
    const pathProblem = checkEntryPath(path);
    if (pathProblem) {
      problem(pathProblem);
      continue;
    }
    const tags = tagText === undefined ? [] : splitTags(tagText);
    entries.push({ line: lineNo, user: user!, ref, path, tags });
  }
  return { entries, problems };
}

/** Parse and throw one error (exit 65) listing every problem. */
export function parseMapfileStrict(text: string, file: string): readonly MapEntry[] {
  const { entries, problems } = parseMapfile(text, file);
  if (problems.length > 0) throw dataError(problems.map((p) => p.message).join("; "));
  return entries;
}

/**
 * `--tags`: `a, b,,c` → ["a","b","c"] (comma-separated, trimmed, empties dropped, as
 * op-secret-manager); undefined → no filter. A given filter that names no tag (`""`, `","`)
 * is refused (64): op-secret-manager reads it as "no filter", so `--cleanup --tags "$UNSET"`
 * would remove every entry instead of none.
 */
export function parseTags(text: string | undefined): string[] {
  if (text === undefined) return [];
  const tags = splitTags(text);
  if (tags.length === 0) throw usageError(`--tags names no tag ("${replaceControl(text, "?")}"); leave --tags out to select every entry`);
  return tags;
}

/** A mapfile line's tag field: an empty list (`,`) means untagged. */
function splitTags(text: string): string[] {
  return text
    .split(",")
    .map((t) => t.trim())
    .filter((t) => t.length > 0);
}

/** Why an entry path is unusable, or undefined. */
export function checkEntryPath(path: string): string | undefined {
  if (path.length === 0) return "empty path";
  if (path.includes("\0")) return "path contains NUL";
  const parts = path.split("/");
  if (parts.includes("..")) return `path "${path}" contains ".." (refused)`;
  if (path.endsWith("/") || parts.at(-1) === ".") return `path "${path}" names a directory, not a file`;
  const nameBytes = Buffer.byteLength(parts.at(-1)!);
  if (nameBytes > maxOutputNameLength)
    return `file name of ${nameBytes} bytes is too long (at most ${maxOutputNameLength}: the temp file beside it adds 25)`;
  return undefined;
}

export interface TagFilter {
  /** From --tags, already parsed; empty means no tag filter. */
  readonly tags: readonly string[];
  readonly untagged: boolean;
}

/**
 * op-secret-manager's selection: no filter → every entry; --tags → entries sharing a tag,
 * plus untagged ones only with --untagged; --untagged alone → only untagged entries.
 */
export function matchesFilter(entry: Pick<MapEntry, "tags">, filter: TagFilter): boolean {
  const untagged = entry.tags.length === 0;
  if (filter.tags.length === 0) return filter.untagged ? untagged : true;
  if (untagged) return filter.untagged;
  return entry.tags.some((tag) => filter.tags.includes(tag));
}

/** The caller's entries that pass the filter, in file order. */
export function selectEntries(entries: readonly MapEntry[], user: string, filter: TagFilter): MapEntry[] {
  return entries.filter((entry) => entry.user === user && matchesFilter(entry, filter));
}

export function secretsDirectory(uid: number): string {
  return `/run/user/${uid}/secrets`;
}

/** An entry's path as an absolute, normalised path: relative ones go under /run/user/<uid>/secrets/. */
export function outputPath(path: string, uid: number): string {
  const problem = checkEntryPath(path);
  if (problem) throw dataError(problem);
  const absolute = path.startsWith("/") ? path : `${secretsDirectory(uid)}/${path}`;
  return posix.normalize(absolute);
}

/**
 * The writer's own check of a path the fetcher handed it (it trusts nothing): absolute,
 * already normal (no `.`, `..` or empty components), no NUL, at most 4096 bytes, and
 * not the secrets directory itself.
 */
export function checkWriterPath(path: string, uid: number): string | undefined {
  if (typeof path !== "string" || path.length === 0) return "empty path";
  if (Buffer.byteLength(path) > 4096) return "path too long";
  if (path.includes("\0")) return "path contains NUL";
  if (!path.startsWith("/")) return `path "${path}" is not absolute`;
  const parts = path.slice(1).split("/");
  if (parts.some((p) => p === "" || p === "." || p === "..")) return `path "${path}" has an empty, "." or ".." component`;
  if (path === secretsDirectory(uid)) return `path "${path}" is the secrets directory itself`;
  return undefined;
}
