#!/usr/bin/env node
import { parseArgs } from "node:util";
import { runCommand } from "./cli/command.js";
import { fetchCommand } from "./cli/commands.js";
import { commonOptions, fetchOptions, parseCacheSeconds, parseDeadline, type FetchArgs } from "./cli/options.js";

/*
 * `fetch` runs at every boot, once per service: it is parsed here with node's own
 * util.parseArgs from the same option table, because loading yargs costs as much as
 * starting node itself. Anything else — other commands, --help, any flag this strict
 * parse does not accept — goes to the yargs CLI, which also gives the error messages.
 */
const args = process.argv.slice(2);
const fast = args[0] === "fetch" ? parseFetch(args.slice(1)) : undefined;
if (fast) {
  await runCommand(fetchCommand, fast);
} else {
  const { buildCli } = await import("./cli/yargs.js");
  // op-secret-manager (Go's flag package) takes `-map-file-path` as well as `--map-file-path`.
  const normalized = args[0] === "user" ? (await import("./commands/user.js")).normalizeUserArgv(args) : args;
  await buildCli(normalized).parseAsync();
}

function parseFetch(rest: string[]): FetchArgs | undefined {
  const table = { ...commonOptions, ...fetchOptions };
  const options = Object.fromEntries(
    Object.entries(table).map(([name, option]) => [
      name,
      {
        type: option.type === "boolean" ? ("boolean" as const) : ("string" as const),
        ...("alias" in option ? { short: option.alias } : {}),
      },
    ]),
  );
  try {
    const { values } = parseArgs({ args: rest, options, strict: true, allowPositionals: false });
    if (typeof values["spec"] !== "string" || ["help", "version"].some((k) => k in values)) return undefined;
    const deadline = values["deadline"] === undefined ? commonOptions.deadline.default : Number(values["deadline"]);
    if (!Number.isFinite(deadline) || deadline <= 0 || deadline > 86400) return undefined;
    const seconds = (flag: "cache-max-age" | "cache-reuse"): number => {
      const text = values[flag];
      return typeof text === "string" ? parseCacheSeconds(flag, text.trim() === "" ? NaN : Number(text)) : fetchOptions[flag].default;
    };
    const text = (flag: "cache-dir" | "cache-marker-dir"): string => {
      const v = values[flag];
      return typeof v === "string" ? v : fetchOptions[flag].default;
    };
    return {
      ...values,
      spec: values["spec"],
      deadline: parseDeadline(deadline),
      serialize: values["serialize"] === true,
      verbose: values["verbose"] === true,
      cache: values["cache"] === true,
      "cache-dir": text("cache-dir"),
      "cache-marker-dir": text("cache-marker-dir"),
      "cache-max-age": seconds("cache-max-age"),
      "cache-reuse": seconds("cache-reuse"),
    };
  } catch {
    return undefined;
  }
}
