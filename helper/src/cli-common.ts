import { ExitCode, exitCodeOf, HomelabError, usageError } from "./errors.js";
import { createLogger, type Logger } from "./log.js";
import { modePattern } from "./spec.js";
import type { SourceOverrides } from "./sources/index.js";

export interface CommonArgs {
  source?: string;
  "connect-host"?: string;
  "token-credential"?: string;
  "token-file"?: string;
  deadline: number;
  serialize: boolean;
  verbose: boolean;
}

export const defaultDeadlineSeconds = 45;

/**
 * The flags every command shares, in one table: yargs builds --help and validation from
 * it, and the boot-time `fetch` fast path (cli.ts) parses with it via util.parseArgs.
 */
export const commonOptions = {
  source: { type: "string", describe: 'Backend: "onepassword" (default), "connect" or "file:PATH"' },
  "connect-host": { type: "string", describe: "1Password Connect server URL (with --source connect)" },
  "token-credential": { type: "string", describe: "systemd credential holding the token (default op-token; op-connect-token for Connect)" },
  "token-file": { type: "string", describe: "Read the token from this file instead (must not be group/other readable)" },
  deadline: { type: "number", default: defaultDeadlineSeconds, describe: "Give up after this many seconds in total" },
  serialize: { type: "boolean", default: false, describe: "Let one fetch run at a time on this host" },
  verbose: { type: "boolean", alias: "v", default: false, describe: "Log more detail (never secret values)" },
} as const;

export const fetchOptions = {
  spec: { type: "string", describe: "Spec file (JSON, version 1)" },
  "output-dir": { type: "string", describe: "Write here instead of the spec's outputDir", hidden: true },
} as const;

export function overridesOf(argv: CommonArgs): SourceOverrides {
  return { source: argv.source, connectHost: argv["connect-host"], tokenCredential: argv["token-credential"], tokenFile: argv["token-file"] };
}

/** Run a command with a logger, SIGTERM/SIGINT wired to an abort signal, and errors mapped to exit codes. */
export function action<A extends Pick<CommonArgs, "verbose">>(run: (argv: A, log: Logger, signal: AbortSignal) => Promise<void>) {
  return (argv: A) =>
    runAndExit({ verbose: argv.verbose }, async (log, signal) => {
      await run(argv, log, signal);
      return ExitCode.ok;
    });
}

export interface RunOptions {
  readonly verbose: boolean;
  readonly prefix?: string;
  /** Said after "stopped by SIGTERM" in the resulting error. */
  readonly stopMessage?: string;
}

/**
 * The one place a command ends: the exit code it returns, or the one its error maps to.
 * It exits at once rather than waiting for the event loop: a backend call abandoned at the
 * deadline (the SDK's own ~10 s connect timeout, a hanging socket) or a pipe still open must
 * not keep a oneshot unit or a waiting caller alive.
 */
export async function runAndExit(options: RunOptions, run: (log: Logger, signal: AbortSignal) => Promise<number>): Promise<never> {
  const log = createLogger({ verbose: options.verbose, ...(options.prefix ? { prefix: options.prefix } : {}) });
  const controller = new AbortController();
  const stop = (name: string) => {
    log.warn(`received ${name}, stopping`);
    controller.abort(new HomelabError(ExitCode.tempFail, `stopped by ${name}${options.stopMessage ? `; ${options.stopMessage}` : ""}`));
  };
  process.once("SIGTERM", () => stop("SIGTERM"));
  process.once("SIGINT", () => stop("SIGINT"));
  let code: number;
  try {
    code = await run(log, controller.signal);
  } catch (error) {
    log.error(error instanceof HomelabError ? error.message : `internal error: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}`);
    code = exitCodeOf(error);
  }
  await Promise.all([drain(process.stdout), drain(process.stderr)]);
  process.exit(code);
}

/**
 * Wait for what we wrote to be taken, but not forever: a reader that stops reading (the
 * wrapper's writer, stopped by its caller) must not keep the fetcher alive.
 */
function drain(stream: NodeJS.WriteStream, timeoutMs = 5000): Promise<void> {
  return new Promise((resolve) => {
    setTimeout(resolve, timeoutMs).unref();
    stream.write("", () => resolve());
  });
}

/** NaN, 0, negative or huge (> 2^31 ms overflows setTimeout) deadlines would abort at once. */
export function parseDeadline(value: number): number {
  if (!Number.isFinite(value) || value <= 0 || value > 86400) {
    throw usageError(`--deadline must be a number of seconds above 0 and at most 86400, not "${String(value)}"`);
  }
  return value;
}

export function parseMode(text: string): number {
  if (!modePattern.test(text)) throw usageError(`--mode must be an octal mode such as 0600, not "${text}"`);
  return parseInt(text, 8);
}

export type FetchArgs = CommonArgs & { spec: string; "output-dir"?: string };

export const fetchAction = action<FetchArgs>(async (argv, log, signal) => {
  const { runFetch } = await import("./commands/fetch.js");
  await runFetch({
    specFile: argv.spec,
    overrides: overridesOf(argv),
    deadlineSeconds: argv.deadline,
    serialize: argv.serialize,
    ...(process.env["HOMELAB_SECRETS_LOCK"] ? { lockPath: process.env["HOMELAB_SECRETS_LOCK"] } : {}),
    ...(argv["output-dir"] ? { outputDir: argv["output-dir"] } : {}),
    log,
    signal,
  });
});
