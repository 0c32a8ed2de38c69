/**
 * `homelab-secrets user`: op-secret-manager's per-user job. Three ways in:
 * - the privilege wrapper's fetcher (service account) and writer (the caller), see
 *   ../user/protocol.ts;
 * - directly, unprivileged (or as root), with path overrides honoured.
 */
import { ExitCode } from "../errors.js";
import type { Logger } from "../log.js";
import { env, wrapperContext } from "../user/protocol.js";

/** `user`'s flags. */
export interface UserArgs {
  verbose: boolean;
  cleanup: boolean;
  serialize: boolean;
  "api-key-path"?: string;
  "map-file-path"?: string;
  tags?: string;
  untagged: boolean;
  deadline: number;
  "config-dir": string;
}

/** op-secret-manager's long flags, which it also accepts with one dash. */
const longFlags = [
  "verbose",
  "cleanup",
  "serialize",
  "api-key-path",
  "map-file-path",
  "tags",
  "untagged",
  "version",
  "help",
  "deadline",
  "config-dir",
];

/**
 * `-map-file-path x` → `--map-file-path x` (Go's flag package takes both). Only the known
 * long names are rewritten, so `-v` and values are left alone; stops at `--`.
 */
export function normalizeUserArgv(args: readonly string[]): string[] {
  const out: string[] = [];
  let rest = false;
  for (const arg of args) {
    if (rest || arg === "--") {
      rest = true;
      out.push(arg);
      continue;
    }
    const match = /^-([a-z][a-z-]+)(=.*)?$/s.exec(arg);
    out.push(match && longFlags.includes(match[1]!) ? `-${arg}` : arg);
  }
  return out;
}

/** The longest a fetch run through the wrapper may take: the --serialize lock wait (300 s). */
const maxPrivilegedDeadlineSeconds = 300;

/**
 * The wrapper kills the fetcher (SIGALRM) after HS_FETCHER_LIMIT_S seconds; the deadline
 * leaves room for node's start and the hand-over, so a slow backend still gets a clean error.
 */
export function fetcherDeadlineCap(limit: string | undefined): number {
  const seconds = Number(limit);
  if (limit === undefined || !Number.isInteger(seconds) || seconds < 1) return maxPrivilegedDeadlineSeconds;
  return Math.max(1, seconds - Math.min(5, Math.floor(seconds / 2)));
}

/** Run `user` in the role the environment names: the wrapper's fetcher or writer, or direct. */
export async function runUser(argv: UserArgs, log: Logger, signal: AbortSignal): Promise<number> {
  const context = wrapperContext();
  const common = { cleanup: argv.cleanup, tags: argv.tags, untagged: argv.untagged, deadlineSeconds: argv.deadline, log, signal };
  if (context?.role === "fetcher") {
    // The caller chooses --deadline, and a --serialize fetcher holds the host-wide lock for
    // as long as it runs: no caller may hold it longer than others are willing to wait.
    const deadlineSeconds = Math.min(argv.deadline, maxPrivilegedDeadlineSeconds, fetcherDeadlineCap(process.env[env.fetcherLimit]));
    const { runFetcher } = await import("../user/fetcher.js");
    return runFetcher(context, { ...common, deadlineSeconds, overrides: Boolean(argv["api-key-path"] || argv["map-file-path"]) });
  }
  if (context?.role === "writer") {
    const { runWriter } = await import("../user/writer.js");
    await runWriter(context, common);
    return ExitCode.ok;
  }
  const { runDirect } = await import("../user/direct.js");
  await runDirect({
    ...common,
    configDir: argv["config-dir"],
    apiKeyPath: argv["api-key-path"],
    mapFilePath: argv["map-file-path"],
    serialize: argv.serialize,
  });
  return ExitCode.ok;
}
