/**
 * The flags commands share, in tables: yargs builds --help and validation from them, and the
 * fast path of `fetch` and `refresh` (./fast.ts) parses with the same tables through
 * util.parseArgs. Each rule (required, conflicts, coerce) is stated once, here.
 */
import { usageError } from "../errors.js";
import { defaultCacheDir, defaultCacheMarkerDir } from "../host-paths.js";
import { modePattern } from "../spec.js";
import type { SourceOverrides } from "../sources/index.js";

/** The flags of every command that resolves references through a source. */
export interface CommonArgs {
  source?: string;
  "connect-host"?: string;
  "token-credential"?: string;
  "token-file"?: string;
  deadline: number;
  serialize: boolean;
  verbose: boolean;
}

/** `fetch`'s flags. */
export type FetchArgs = CommonArgs & {
  spec: string;
  "output-dir"?: string;
  cache: boolean;
  "cache-dir": string;
  "cache-max-age": number;
  "cache-reuse": number;
  "cache-marker-dir": string;
};

/** --cache-max-age when not given: a week. */
export const defaultCacheMaxAgeSeconds = 604800;

/** --deadline when not given, for every command that has one. */
export const defaultDeadlineSeconds = 45;

/** --deadline's definition (help text and default), shared by every command that resolves. */
export const deadlineOption = {
  type: "number",
  default: defaultDeadlineSeconds,
  describe: "Give up after this many seconds in total",
  coerce: (v: number) => parseDeadline(v),
} as const;

/** --verbose's definition, shared by every command that logs. */
export const verboseOption = { type: "boolean", alias: "v", default: false, describe: "Log more detail (never secret values)" } as const;

/** The flags of every command that resolves references through a source. */
export const commonOptions = {
  source: { type: "string", describe: 'Backend: "onepassword" (default), "connect" or "file:PATH"' },
  "connect-host": { type: "string", describe: "1Password Connect server URL (with --source connect)" },
  "token-credential": { type: "string", describe: "systemd credential holding the token (default op-token; op-connect-token for Connect)" },
  "token-file": { type: "string", describe: "Read the token from this file instead (must not be group/other readable)" },
  deadline: deadlineOption,
  serialize: { type: "boolean", default: false, describe: "Let one fetch run at a time on this host" },
  verbose: verboseOption,
} as const;

/** The flags of every command that stores the sealed cache (`fetch`, `refresh`). */
export const cacheStoreOptions = {
  cache: {
    type: "boolean",
    default: false,
    describe: "Keep the values sealed with systemd-creds (--cache-dir) and use them when the backend fails temporarily (75)",
  },
  "cache-dir": { type: "string", default: defaultCacheDir, describe: "Where --cache keeps its sealed files (root's, 0700)" },
  "cache-marker-dir": {
    type: "string",
    default: defaultCacheMarkerDir,
    describe: "Where a fetch on cached values records so (doctor lists them)",
    hidden: true,
  },
} as const;

/** The flags only `fetch` has. */
export const fetchOptions = {
  spec: { type: "string", demandOption: true, describe: "Spec file (JSON, version 1)" },
  "output-dir": { type: "string", describe: "Write here instead of the spec's outputDir", hidden: true },
  ...cacheStoreOptions,
  "cache-max-age": {
    type: "number",
    default: defaultCacheMaxAgeSeconds,
    describe: "Never use cached values older than this many seconds (older ones are removed)",
    coerce: (v: number) => parseCacheSeconds("cache-max-age", v),
  },
  "cache-reuse": {
    type: "number",
    default: 0,
    describe: "Within this many seconds of the last fresh fetch, use the cache without asking the backend (restart loops)",
    coerce: (v: number) => parseCacheSeconds("cache-reuse", v),
  },
} as const;

/** `refresh`'s flags. */
export type RefreshArgs = CommonArgs & {
  spec: string;
  restart?: string[];
  reload?: string[];
  "from-credentials": boolean;
  cache: boolean;
  "cache-dir": string;
  "cache-marker-dir": string;
};

/** The flags only `refresh` has. */
export const refreshOptions = {
  spec: { type: "string", demandOption: true, describe: "Spec file (JSON, version 1)" },
  restart: {
    type: "string",
    array: true,
    conflicts: "reload",
    describe: "When something changed: systemctl try-restart this unit (only it, not its secrets unit)",
  },
  reload: {
    type: "string",
    array: true,
    conflicts: "restart",
    describe: "When something changed: systemctl try-reload-or-restart this unit",
  },
  "from-credentials": {
    type: "boolean",
    default: false,
    conflicts: "cache",
    describe: "The rendered files are the agent's fresh credentials in $CREDENTIALS_DIRECTORY (throughAgent): no backend, no token",
  },
  ...cacheStoreOptions,
  cache: {
    ...cacheStoreOptions.cache,
    describe: "As the secrets unit's fetch --cache: seal the fresh values and drop the cached-values marker (never uses cached values)",
  },
} as const;

/** --cache-max-age and --cache-reuse: whole seconds, 0 to ten years. */
export function parseCacheSeconds(flag: string, value: number): number {
  if (!Number.isInteger(value) || value < 0 || value > 315_360_000) {
    throw usageError(`--${flag} must be a whole number of seconds from 0 to 315360000, not "${String(value)}"`);
  }
  return value;
}

/** The source flags as the sources module takes them. */
export function overridesOf(argv: Pick<CommonArgs, "source" | "connect-host" | "token-credential" | "token-file">): SourceOverrides {
  return {
    source: argv.source,
    connectHost: argv["connect-host"],
    tokenCredential: argv["token-credential"],
    tokenFile: argv["token-file"],
  };
}

/** NaN, 0, negative or huge (> 2^31 ms overflows setTimeout) deadlines would abort at once. */
export function parseDeadline(value: number): number {
  if (!Number.isFinite(value) || value <= 0 || value > 86400) {
    throw usageError(`--deadline must be a number of seconds above 0 and at most 86400, not "${String(value)}"`);
  }
  return value;
}

/** --mode as an octal string (0600) to a number. */
export function parseMode(text: string): number {
  if (!modePattern.test(text)) throw usageError(`--mode must be an octal mode such as 0600, not "${text}"`);
  return parseInt(text, 8);
}
