#!/usr/bin/env node
import yargs, { type Argv } from "yargs";
import { hideBin } from "yargs/helpers";
import { ExitCode, exitCodeOf, HomelabError, usageError } from "./errors.js";
import { createLogger, type Logger } from "./log.js";
import { version } from "./version.js";
import type { SourceOverrides } from "./sources/index.js";

interface CommonArgs {
  source?: string;
  "connect-host"?: string;
  "token-credential"?: string;
  "token-file"?: string;
  deadline: number;
  serialize: boolean;
  verbose: boolean;
}

const defaultDeadlineSeconds = 45;

function overridesOf(argv: CommonArgs): SourceOverrides {
  return { source: argv.source, connectHost: argv["connect-host"], tokenCredential: argv["token-credential"], tokenFile: argv["token-file"] };
}

/** Run a command with a logger, SIGTERM/SIGINT wired to an abort signal, and errors mapped to exit codes. */
function action<A extends CommonArgs>(run: (argv: A, log: Logger, signal: AbortSignal) => Promise<void>) {
  return async (argv: A) => {
    const log = createLogger({ verbose: argv.verbose });
    const controller = new AbortController();
    const stop = (name: string) => {
      log.warn(`received ${name}, stopping`);
      controller.abort(new HomelabError(ExitCode.tempFail, `stopped by ${name}`));
    };
    const onTerm = () => stop("SIGTERM");
    const onInt = () => stop("SIGINT");
    process.once("SIGTERM", onTerm);
    process.once("SIGINT", onInt);
    let code: number = ExitCode.ok;
    try {
      await run(argv, log, controller.signal);
    } catch (error) {
      log.error(error instanceof HomelabError ? error.message : `internal error: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}`);
      code = exitCodeOf(error);
    }
    // Exit now: a backend call abandoned at the deadline (the SDK's own ~10 s connect
    // timeout, a hanging socket) must not keep a oneshot unit alive.
    await Promise.all([drain(process.stdout), drain(process.stderr)]);
    process.exit(code);
  };
}

function drain(stream: NodeJS.WriteStream): Promise<void> {
  return new Promise((resolve) => stream.write("", () => resolve()));
}

function withCommon<T>(y: Argv<T>) {
  return y
    .option("source", { type: "string", describe: 'Backend: "onepassword" (default), "connect" or "file:PATH"' })
    .option("connect-host", { type: "string", describe: "1Password Connect server URL (with --source connect)" })
    .option("token-credential", { type: "string", describe: "systemd credential holding the token (default op-token; op-connect-token for Connect)" })
    .option("token-file", { type: "string", describe: "Read the token from this file instead (must not be group/other readable)" })
    .option("deadline", { type: "number", default: defaultDeadlineSeconds, coerce: parseDeadline, describe: "Give up after this many seconds in total" })
    .option("serialize", { type: "boolean", default: false, describe: "Let one fetch run at a time on this host" })
    .option("verbose", { alias: "v", type: "boolean", default: false, describe: "Log more detail (never secret values)" });
}

/** NaN, 0, negative or huge (> 2^31 ms overflows setTimeout) deadlines would abort at once. */
function parseDeadline(value: number): number {
  if (!Number.isFinite(value) || value <= 0 || value > 86400) {
    throw usageError(`--deadline must be a number of seconds above 0 and at most 86400, not "${String(value)}"`);
  }
  return value;
}

function parseMode(text: string): number {
  if (!/^0?[0-7]{3}$/.test(text)) throw usageError(`--mode must be an octal mode such as 0600, not "${text}"`);
  return parseInt(text, 8);
}

export function buildCli(args: string[]) {
  return yargs(args)
    .scriptName("homelab-secrets")
    .usage("$0 <command> [options]\n\nDeliver 1Password secrets to systemd services and Linux users.")
    .command(
      "fetch",
      "Resolve every reference in a spec and write all outputs, or nothing",
      (y: Argv) => withCommon(y).option("spec", { type: "string", demandOption: true, describe: "Spec file (JSON, version 1)" }).option("output-dir", { type: "string", hidden: true }),
      action<CommonArgs & { spec: string; "output-dir"?: string }>(async (argv, log, signal) => {
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
      }),
    )
    .command(
      "read <ref>",
      "Resolve one reference to stdout or a file",
      (y: Argv) =>
        withCommon(y)
          .positional("ref", { type: "string", demandOption: true, describe: "op://vault/item/[section/]field" })
          .option("out", { type: "string", describe: "Write to this file (atomically) instead of stdout" })
          .option("mode", { type: "string", default: "0600", describe: "Mode of --out" }),
      action<CommonArgs & { ref: string; out?: string; mode: string }>(async (argv, log, signal) => {
        const { runRead } = await import("./commands/read.js");
        await runRead({ ref: argv.ref, out: argv.out, mode: parseMode(argv.mode), overrides: overridesOf(argv), deadlineSeconds: argv.deadline, log, signal });
      }),
    )
    .command(
      "check",
      "Validate a spec offline (used at Nix build time)",
      (y: Argv) => withCommon(y).option("spec", { type: "string", describe: "Spec file to check" }).option("mapfile", { type: "string", describe: "Mapfile to check" }),
      action<CommonArgs & { spec?: string; mapfile?: string }>(async (argv) => {
        if (!argv.spec && !argv.mapfile) throw usageError("check needs --spec FILE or --mapfile FILE");
        const { checkSpec } = await import("./commands/check.js");
        if (argv.spec) process.stdout.write(`${await checkSpec(argv.spec)}\n`);
        if (argv.mapfile) {
          throw usageError("check --mapfile is not available yet");
        }
      }),
    )
    .command(
      "cleanup",
      "Remove what fetch wrote for a spec",
      (y: Argv) => withCommon(y).option("spec", { type: "string", demandOption: true }).option("output-dir", { type: "string", describe: "Clean this directory instead of the spec's outputDir" }),
      action<CommonArgs & { spec: string; "output-dir"?: string }>(async (argv, log) => {
        const { runCleanup } = await import("./commands/cleanup.js");
        await runCleanup({ specFile: argv.spec, ...(argv["output-dir"] ? { outputDir: argv["output-dir"] } : {}), log });
      }),
    )
    .command(
      "demo",
      "Fetch the bundled example spec from the bundled demo vault into a temp dir and show it",
      (y: Argv) => withCommon(y).option("output-dir", { type: "string", describe: "Write here instead of a new temp dir" }),
      action<CommonArgs & { "output-dir"?: string }>(async (argv, log) => {
        const { runDemo } = await import("./commands/demo.js");
        process.stdout.write(await runDemo({ log, outputDir: argv["output-dir"] }));
      }),
    )
    .demandCommand(1, "name a command (see --help)")
    .strict()
    .version(version)
    .help()
    .alias("help", "h")
    .wrap(Math.min(100, process.stdout.columns || 100))
    .fail((message, error) => {
      // yargs wraps errors thrown by option parsing (coerce) in a YError: a usage error.
      if (error && error.name !== "YError" && !(error instanceof HomelabError)) throw error;
      const log = createLogger();
      log.error(error?.message ?? message);
      log.info('Run "homelab-secrets --help" for usage.');
      process.exit(ExitCode.usage);
    });
}

await buildCli(hideBin(process.argv)).parseAsync();
