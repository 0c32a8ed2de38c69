#!/usr/bin/env node
import { runCommand, type CliCommand } from "./cli/command.js";
import { fetchCommand, refreshCommand } from "./cli/commands.js";
import { parseFast } from "./cli/fast.js";

/*
 * `fetch` runs at every boot, once per service, and `refresh` on every timer tick: both are
 * parsed here with node's own util.parseArgs from their option tables (./cli/fast.ts),
 * because loading yargs costs as much as starting node itself. Anything else — other
 * commands, --help, any flag this strict parse does not accept — goes to the yargs CLI,
 * which also gives the error messages.
 */
const args = process.argv.slice(2);
const rest = args.slice(1);
const fast = args[0] === "fetch" ? fastRun(fetchCommand, rest) : args[0] === "refresh" ? fastRun(refreshCommand, rest) : undefined;
if (fast) {
  await fast;
} else {
  const { buildCli } = await import("./cli/yargs.js");
  // op-secret-manager (Go's flag package) takes `-map-file-path` as well as `--map-file-path`.
  const normalized = args[0] === "user" ? (await import("./commands/user.js")).normalizeUserArgv(args) : args;
  await buildCli(normalized).parseAsync();
}

/** Run `command` when the fast path takes `rest`; undefined leaves it to yargs. */
function fastRun<A extends object>(command: CliCommand<A>, rest: readonly string[]): Promise<never> | undefined {
  const parsed = command.table ? parseFast(command.table, rest) : undefined;
  // The table is the command's whole flag set, so the parse has exactly A's shape.
  return parsed ? runCommand(command, parsed as A) : undefined;
}
