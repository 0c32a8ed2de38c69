/**
 * `homelab-secrets user`: op-secret-manager's per-user job. Three ways in:
 * - the privilege wrapper's fetcher (service account) and writer (the caller), see
 *   ../user/protocol.ts;
 * - directly, unprivileged (or as root), with path overrides honoured.
 */
import type { Argv, CommandModule } from "yargs";
import { parseDeadline, runAndExit } from "../cli-common.js";
import { ExitCode } from "../errors.js";
import type { Logger } from "../log.js";
import { env } from "../user/protocol.js";

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
const longFlags = ["verbose", "cleanup", "serialize", "api-key-path", "map-file-path", "tags", "untagged", "version", "help", "deadline", "config-dir"];

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

export const userCommand: CommandModule<object, UserArgs> = {
  command: "user",
  describe: "Fetch the secrets a mapfile assigns to you (op-secret-manager compatible; privileged through homelab-secrets-user)",
  builder: (y: Argv) =>
    y
      .option("verbose", { alias: "v", type: "boolean", default: false, describe: "Log more detail (never secret values)" })
      .option("cleanup", { type: "boolean", default: false, describe: "Remove your mapped files instead of writing them" })
      .option("serialize", { type: "boolean", default: false, describe: "Let one fetch run at a time (waits up to 5 minutes)" })
      .option("api-key-path", { type: "string", describe: "Token file (env OP_API_KEY_PATH; honoured only for root or unprivileged runs)" })
      .option("map-file-path", { type: "string", describe: "Mapfile (env OP_MAP_FILE_PATH; honoured only for root or unprivileged runs)" })
      .option("tags", { type: "string", describe: "Only entries with one of these comma-separated tags" })
      .option("untagged", { type: "boolean", default: false, describe: "Include untagged entries (alone: only untagged ones)" })
      .option("deadline", { type: "number", default: 45, coerce: parseDeadline, describe: "Give up after this many seconds in total" })
      .option("config-dir", { type: "string", default: "/etc/homelab-secrets", describe: "Host configuration directory (unprivileged runs)" }),
  handler: async (argv) => {
    // The wrapper's two halves say which one is talking; values never reach the log.
    const role = process.env["HS_WRAPPER"] === "1" ? process.env["HS_ROLE"] : undefined;
    const prefix = role === "fetcher" || role === "writer" ? `homelab-secrets user (${role})` : undefined;
    // A stopped run must end at once: the writer's caller is waiting, and a fetcher left
    // behind would hold the --serialize lock.
    await runAndExit({ verbose: argv.verbose, ...(prefix ? { prefix } : {}), stopMessage: "nothing written" }, (log, signal) => runUser(argv, log, signal));
  },
};

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

async function runUser(argv: UserArgs, log: Logger, signal: AbortSignal): Promise<number> {
  const { wrapperContext, runFetcher, runWriter } = await import("../user/roles.js");
  const context = wrapperContext();
  const common = { cleanup: argv.cleanup, tags: argv.tags, untagged: argv.untagged, deadlineSeconds: argv.deadline, log, signal };
  if (context?.role === "fetcher") {
    // The caller chooses --deadline, and a --serialize fetcher holds the host-wide lock for
    // as long as it runs: no caller may hold it longer than others are willing to wait.
    const deadlineSeconds = Math.min(argv.deadline, maxPrivilegedDeadlineSeconds, fetcherDeadlineCap(process.env[env.fetcherLimit]));
    // Errors travel to the writer, which reports them; our exit code only mirrors them.
    return runFetcher(context, { ...common, deadlineSeconds, overrides: Boolean(argv["api-key-path"] || argv["map-file-path"]) });
  }
  if (context?.role === "writer") {
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
