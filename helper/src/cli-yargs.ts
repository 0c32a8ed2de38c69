import yargs, { type Argv, type Options } from "yargs";
import { ExitCode, HomelabError, usageError } from "./errors.js";
import { createLogger } from "./log.js";
import { version } from "./version.js";
import { doctorCommand } from "./commands/doctor.js";
import { userCommand } from "./commands/user.js";
import { action, commonOptions, fetchAction, fetchOptions, overridesOf, parseDeadline, parseMode, type CommonArgs } from "./cli-common.js";

function withCommon<T>(y: Argv<T>) {
  const options: Record<string, Options> = { ...commonOptions, deadline: { ...commonOptions.deadline, coerce: parseDeadline } };
  return y.options(options) as unknown as Argv<T & CommonArgs>;
}

export function buildCli(args: string[]) {
  return yargs(args)
    .scriptName("homelab-secrets")
    .usage("$0 <command> [options]\n\nDeliver 1Password secrets to systemd services and Linux users.")
    .command(
      "fetch",
      "Resolve every reference in a spec and write all outputs, or nothing",
      (y: Argv) => withCommon(y).options(fetchOptions).demandOption("spec"),
      fetchAction,
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
      action<CommonArgs & { spec?: string; mapfile?: string }>(async (argv, log) => {
        if (!argv.spec && !argv.mapfile) throw usageError("check needs --spec FILE or --mapfile FILE");
        const { checkSpec, checkMapfile } = await import("./commands/check.js");
        if (argv.spec) process.stdout.write(`${await checkSpec(argv.spec, log)}\n`);
        if (argv.mapfile) process.stdout.write(`${await checkMapfile(argv.mapfile, log)}\n`);
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
      "agent",
      "Serve systemd LoadCredential= requests from the agent's front end (see homelab-secrets-agent)",
      (y: Argv) =>
        withCommon(y)
          .option("policy", { type: "string", demandOption: true, describe: "Agent policy file (JSON, version 1): unit → credential ID → what to render" })
          .option("ttl", { type: "number", default: 300, describe: "Serve values from memory for this many seconds (0: always ask the backend)" })
          .option("fd", { type: "number", default: 3, describe: "The front end's socketpair" })
          .option("check", { type: "boolean", default: false, describe: "Only validate the policy offline (used at Nix build time)" }),
      action<CommonArgs & { policy: string; ttl: number; fd: number; check: boolean }>(async (argv, log, signal) => {
        const { checkPolicy, runAgent } = await import("./commands/agent.js");
        if (argv.check) {
          process.stdout.write(`${await checkPolicy(argv.policy)}\n`);
          return;
        }
        await runAgent({ policyFile: argv.policy, overrides: overridesOf(argv), ttlSeconds: argv.ttl, deadlineSeconds: argv.deadline, fd: argv.fd, log, signal });
      }),
    )
    .command(
      "install",
      "Write a spec's outputs from the credentials systemd loaded from the agent ($CREDENTIALS_DIRECTORY)",
      (y: Argv) => withCommon(y).option("spec", { type: "string", demandOption: true, describe: "Spec file: its outputs are the credential IDs" }),
      action<CommonArgs & { spec: string }>(async (argv, log) => {
        const { runInstall } = await import("./agent/install.js");
        await runInstall({ specFile: argv.spec, log });
      }),
    )
    .command(userCommand)
    .command(doctorCommand)
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

