import { constants } from "node:fs";
import { open } from "node:fs/promises";
import { isAbsolute, posix } from "node:path";
import { configError, dataError, isHomelabError } from "./errors.js";
import { parseJsonWithLines, type LocatedJson } from "./json-locate.js";
import { parseReference, uniqueReferences, type SecretReference } from "./reference.js";
import { envKeyPattern } from "./render/env.js";
import { parseTemplate, templateReferences, type TemplatePart } from "./render/template.js";

/** Where values come from. Tokens are never in a spec, only where to find them. */
export type SourceConfig =
  | { readonly type: "onepassword"; readonly tokenCredential?: string; readonly tokenFile?: string }
  | {
      readonly type: "connect";
      readonly host: string;
      readonly tokenCredential?: string;
      readonly tokenFile?: string;
      /** Over plain http to loopback: the account Connect runs as, if not root (user name or uid). */
      readonly listenerUser?: string | number;
    }
  | { readonly type: "file"; readonly path: string };

export interface FileOutput {
  readonly name: string;
  readonly ref: SecretReference;
  readonly mode: number;
}

export interface EnvFileOutput {
  readonly name: string;
  readonly mode: number;
  readonly vars: ReadonlyArray<readonly [string, SecretReference]>;
}

export interface TemplateOutput {
  readonly name: string;
  readonly mode: number;
  readonly parts: readonly TemplatePart[];
}

export interface Spec {
  readonly file: string;
  readonly name: string;
  readonly outputDir: string;
  /** User and group names or numeric ids; undefined means "whoever runs the helper". */
  readonly owner: string | number | undefined;
  readonly group: string | number | undefined;
  /** undefined: create missing directories 0700 and leave an existing one as it is. */
  readonly dirMode: number | undefined;
  readonly source: SourceConfig | undefined;
  readonly files: readonly FileOutput[];
  readonly envFiles: readonly EnvFileOutput[];
  readonly templates: readonly TemplateOutput[];
}

const defaultFileMode = 0o400;
/** An octal permission string such as "0400" or "640": no setuid, setgid or sticky bits. */
export const modePattern = /^0?[0-7]{3}$/;
const namePattern = /^[A-Za-z0-9_][A-Za-z0-9_.@-]*$/;
/** NAME_MAX (255) less what the temp file beside an output adds (write.ts: ".NAME.<16 hex>.hs-tmp"). */
export const maxOutputNameLength = 255 - 25;

/**
 * Why a mode string cannot be used for a secret file or its directory, or undefined.
 * The owner may have any bits; the group may read and traverse but never write (a writer
 * could truncate or replace the secret under the service); others get nothing.
 */
export function modeProblem(text: string): string | undefined {
  if (!modePattern.test(text)) return 'must be an octal mode string such as "0400" (no setuid, setgid or sticky bits)';
  const mode = parseInt(text, 8);
  if ((mode & 0o027) !== 0)
    return `"${text}" lets ${(mode & 0o007) !== 0 ? "others access" : "the group write"} a secret; use a mode such as "0400" or "0440" (group may read, never write; others nothing)`;
  return undefined;
}

/** Why an output name cannot be used, or undefined: one plain file name its temp file still fits beside. */
export function outputNameProblem(name: string): string | undefined {
  if (!namePattern.test(name) || name.endsWith(".hs-tmp"))
    return 'output name must be a plain file name (letters, digits, "._@-", not starting with "." or "-", no "/")';
  if (name.length > maxOutputNameLength)
    return `output name is ${name.length} characters long; at most ${maxOutputNameLength} fit (the temp file beside it adds 25)`;
  return undefined;
}
const topLevelKeys = new Set(["version", "name", "outputDir", "owner", "group", "dirMode", "source", "files", "envFiles", "templates"]);

export async function loadSpec(file: string): Promise<Spec> {
  let text: string;
  try {
    // O_NONBLOCK: a FIFO opens at once and is refused, instead of hanging before any deadline runs.
    const handle = await open(file, constants.O_RDONLY | constants.O_NONBLOCK);
    try {
      const stats = await handle.stat();
      if (stats.isDirectory()) throw configError(`cannot read spec ${file}: EISDIR`);
      if (!stats.isFile()) throw configError(`spec ${file} is not a regular file`);
      text = await handle.readFile("utf8");
    } finally {
      await handle.close();
    }
  } catch (error) {
    if (isHomelabError(error)) throw error;
    throw configError(`cannot read spec ${file}: ${(error as NodeJS.ErrnoException).code ?? String(error)}`);
  }
  return parseSpec(text, file);
}

export function parseSpec(text: string, file: string): Spec {
  const json = parseJsonWithLines(text, file);
  const at = (pointer: string) => `${file}:${json.lineOf(pointer)}: ${pointer.slice(1).replace(/\//g, ".") || "spec"}`;
  const v = new Validator(json, at);

  const root = v.object("");
  for (const key of Object.keys(root)) if (!topLevelKeys.has(key)) throw dataError(`${at(`/${key}`)}: unknown key`);
  if (root["version"] !== 1) throw dataError(`${at("/version")}: must be 1 (this helper reads spec version 1)`);
  const name = v.string("/name", { pattern: namePattern, what: "a unit-style name" });
  const outputDir = v.string("/outputDir");
  if (!isAbsolute(outputDir) || outputDir.split("/").includes("..") || posix.normalize(outputDir) === "/") {
    throw dataError(`${at("/outputDir")}: must be an absolute directory path without ".." (not "/")`);
  }
  const owner = v.optionalAccount("/owner");
  const group = v.optionalAccount("/group");
  const dirMode = v.optionalMode("/dirMode");
  const source = root["source"] === undefined ? undefined : parseSource(v, at);

  const outputNames = new Map<string, string>();
  const claim = (outName: string, pointer: string) => {
    const problem = outputNameProblem(outName);
    if (problem) throw dataError(`${at(pointer)}: ${problem}`);
    const previous = outputNames.get(outName);
    if (previous) throw dataError(`${at(pointer)}: output "${outName}" is already defined at ${previous}`);
    outputNames.set(outName, at(pointer));
  };

  const files: FileOutput[] = Object.keys(v.optionalObject("/files")).map((outName) => {
    const pointer = `/files/${escape(outName)}`;
    claim(outName, pointer);
    v.onlyKeys(pointer, ["ref", "mode"]);
    return { name: outName, ref: v.reference(`${pointer}/ref`), mode: v.mode(`${pointer}/mode`, defaultFileMode) };
  });

  const envFiles: EnvFileOutput[] = Object.keys(v.optionalObject("/envFiles")).map((outName) => {
    const pointer = `/envFiles/${escape(outName)}`;
    claim(outName, pointer);
    v.onlyKeys(pointer, ["vars", "mode"]);
    const vars = Object.keys(v.object(`${pointer}/vars`)).map((key): [string, SecretReference] => {
      if (!envKeyPattern.test(key)) throw dataError(`${at(`${pointer}/vars/${escape(key)}`)}: "${key}" is not a valid variable name`);
      return [key, v.reference(`${pointer}/vars/${escape(key)}`)];
    });
    if (vars.length === 0) throw dataError(`${at(`${pointer}/vars`)}: needs at least one variable`);
    return { name: outName, mode: v.mode(`${pointer}/mode`, defaultFileMode), vars };
  });

  const templates: TemplateOutput[] = Object.keys(v.optionalObject("/templates")).map((outName) => {
    const pointer = `/templates/${escape(outName)}`;
    claim(outName, pointer);
    v.onlyKeys(pointer, ["content", "mode"]);
    const content = v.string(`${pointer}/content`, { allowEmpty: true });
    const parts = parseTemplate(content, at(`${pointer}/content`));
    // Nothing to fetch: a mistyped placeholder ("{{ op:/V/I/f }}") would go out as text.
    // A file without secrets belongs in the ordinary configuration.
    if (templateReferences(parts).length === 0)
      throw dataError(`${at(`${pointer}/content`)}: contains no {{ op://vault/item/field }} reference`);
    return { name: outName, mode: v.mode(`${pointer}/mode`, defaultFileMode), parts };
  });

  if (outputNames.size === 0) throw dataError(`${at("")}: defines no files, envFiles or templates`);
  return { file, name, outputDir: posix.normalize(outputDir), owner, group, dirMode, source, files, envFiles, templates };
}

/**
 * The `source` object at `/source` of a located JSON document — a spec, or the agent's policy —
 * with the same rules and file:line errors for both.
 */
export function parseSourceAt(json: LocatedJson, at: (pointer: string) => string): SourceConfig {
  return parseSource(new Validator(json, at), at);
}

function parseSource(v: Validator, at: (p: string) => string): SourceConfig {
  const source = v.object("/source");
  const type = source["type"];
  if (type === "file") {
    v.onlyKeys("/source", ["type", "path"]);
    const path = v.string("/source/path");
    if (!isAbsolute(path)) throw dataError(`${at("/source/path")}: must be an absolute path`);
    return { type, path };
  }
  const tokenCredential = v.optionalString("/source/tokenCredential", /^[A-Za-z0-9_.@-]+$/);
  const tokenFile = v.optionalString("/source/tokenFile");
  const token = { ...(tokenCredential ? { tokenCredential } : {}), ...(tokenFile ? { tokenFile } : {}) };
  if (type === "onepassword") {
    v.onlyKeys("/source", ["type", "tokenCredential", "tokenFile"]);
    return { type, ...token };
  }
  if (type === "connect") {
    v.onlyKeys("/source", ["type", "host", "tokenCredential", "tokenFile", "listenerUser"]);
    const host = v.string("/source/host");
    if (!/^https?:\/\/[^\s/]+/.test(host)) throw dataError(`${at("/source/host")}: must be an http:// or https:// URL`);
    const listenerUser = v.optionalAccount("/source/listenerUser");
    return { type, host, ...token, ...(listenerUser !== undefined ? { listenerUser } : {}) };
  }
  throw dataError(`${at("/source/type")}: must be "onepassword", "connect" or "file"`);
}

/** Every reference a spec needs, once each, in first-seen order. */
export function specReferences(spec: Spec): SecretReference[] {
  return uniqueReferences([
    ...spec.files.map((f) => f.ref),
    ...spec.envFiles.flatMap((e) => e.vars.map(([, ref]) => ref)),
    ...spec.templates.flatMap((t) => templateReferences(t.parts)),
  ]);
}

export function specOutputNames(spec: Spec): string[] {
  return [...spec.files, ...spec.envFiles, ...spec.templates].map((o) => o.name);
}

/** One key as a JSON pointer segment (RFC 6901: "~" as "~0", "/" as "~1"). */
export const pointerKey = (key: string): string => key.replace(/~/g, "~0").replace(/\//g, "~1");
const escape = pointerKey;

/**
 * Reads a located JSON document by JSON pointer; every refusal a dataError naming file:line
 * and the key path (through `at`). The spec's rules; the agent's policy uses the same.
 */
export class Validator {
  constructor(
    private readonly json: LocatedJson,
    private readonly at: (pointer: string) => string,
  ) {}

  private get(pointer: string): unknown {
    let value: unknown = this.json.value;
    for (const raw of pointer.split("/").slice(1)) {
      const key = raw.replace(/~1/g, "/").replace(/~0/g, "~");
      value =
        value !== null && typeof value === "object" && Object.hasOwn(value, key) ? (value as Record<string, unknown>)[key] : undefined;
    }
    return value;
  }

  private fail(pointer: string, why: string): never {
    throw dataError(`${this.at(pointer)}: ${why}`);
  }

  object(pointer: string): Record<string, unknown> {
    const value = this.get(pointer);
    if (value === null || typeof value !== "object" || Array.isArray(value)) this.fail(pointer, "must be an object");
    return value as Record<string, unknown>;
  }

  optionalObject(pointer: string): Record<string, unknown> {
    return this.get(pointer) === undefined ? {} : this.object(pointer);
  }

  onlyKeys(pointer: string, allowed: readonly string[]): void {
    for (const key of Object.keys(this.object(pointer))) {
      if (!allowed.includes(key)) this.fail(`${pointer}/${escape(key)}`, `unknown key (allowed: ${allowed.join(", ")})`);
    }
  }

  string(pointer: string, options: { pattern?: RegExp; what?: string; allowEmpty?: boolean } = {}): string {
    const value = this.get(pointer);
    if (value === undefined) this.fail(pointer, "is required");
    if (typeof value !== "string") this.fail(pointer, "must be a string");
    if (!options.allowEmpty && value.length === 0) this.fail(pointer, "must not be empty");
    if (options.pattern && !options.pattern.test(value)) this.fail(pointer, `"${value}" is not ${options.what ?? "valid"}`);
    return value;
  }

  optionalString(pointer: string, pattern?: RegExp): string | undefined {
    if (this.get(pointer) === undefined) return undefined;
    return this.string(pointer, pattern ? { pattern } : {});
  }

  optionalAccount(pointer: string): string | number | undefined {
    const value = this.get(pointer);
    if (value === undefined) return undefined;
    if (isAccount(value)) return value;
    return this.fail(pointer, "must be a user/group name or a numeric id");
  }

  mode(pointer: string, fallback: number): number {
    return this.optionalMode(pointer) ?? fallback;
  }

  optionalMode(pointer: string): number | undefined {
    const value = this.get(pointer);
    if (value === undefined) return undefined;
    const problem = typeof value === "string" ? modeProblem(value) : modeProblem("");
    if (problem) this.fail(pointer, problem);
    return parseInt(value as string, 8);
  }

  reference(pointer: string): SecretReference {
    const value = this.get(pointer);
    if (typeof value !== "string") this.fail(pointer, 'must be an "op://…" reference string');
    return parseReference(value, this.at(pointer));
  }
}

/** A user or group as a spec may name it: a name, or a numeric id below (uid_t)-1. */
function isAccount(value: unknown): value is string | number {
  if (typeof value === "number") return Number.isInteger(value) && value >= 0 && value < 2 ** 32 - 1;
  return typeof value === "string" && /^[A-Za-z0-9_][A-Za-z0-9_.-]*\$?$/.test(value);
}
