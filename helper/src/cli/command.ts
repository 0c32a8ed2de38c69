import type { Argv } from "yargs";
import { ExitCode } from "../errors.js";
import type { Logger } from "../log.js";
import type { OptionTable } from "./fast.js";
import { runAndExit, type RunOptions } from "./run.js";

/**
 * The one shape of a command: its flags, and a `run` that returns an exit code (or nothing
 * for 0) or throws. Every command ends through runAndExit, so errors map to the same codes.
 */
export interface CliCommand<A extends object> {
  /** yargs' command string, e.g. "read <ref>". */
  readonly command: string;
  readonly describe: string;
  readonly options: (y: Argv) => Argv<A>;
  /** Every flag of the command, when `options` is built from this one table: the fast path (./fast.ts) can then parse it. */
  readonly table?: OptionTable;
  readonly run: (argv: A, log: Logger, signal: AbortSignal) => Promise<number | void>;
  /** The logger's prefix and the stop message, when not the defaults. */
  readonly runOptions?: (argv: A) => Omit<RunOptions, "verbose">;
}

/** Run `command` with parsed flags and exit. */
export function runCommand<A extends object>(command: CliCommand<A>, argv: A): Promise<never> {
  const verbose = "verbose" in argv && argv.verbose === true;
  return runAndExit(
    { verbose, ...command.runOptions?.(argv) },
    async (log, signal) => (await command.run(argv, log, signal)) ?? ExitCode.ok,
  );
}

/** What adds one command to the yargs CLI. */
export type Registration = (y: Argv) => Argv;

/** Add `command` to a yargs CLI. */
export function register<A extends object>(command: CliCommand<A>): Registration {
  return (y) =>
    y.command(command.command, command.describe, command.options, (argv) =>
      // yargs adds camelCase aliases, `_` and `$0` to the flags the command declared.
      runCommand(command, argv as unknown as A),
    );
}
