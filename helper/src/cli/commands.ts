/**
 * Every command of the CLI, in one shape (CliCommand): its flags here, its work in
 * ../commands/*.ts, loaded only when it runs. To add one, define it below and list it in
 * `commands`.
 */
import type { Argv, Options } from "yargs";
import { ExitCode, usageError } from "../errors.js";
import type { DoctorArgs } from "../commands/doctor.js";
import type { UserArgs } from "../commands/user.js";
import { defaultConfigDir, nixosWrapperPath } from "../host-paths.js";
import { register, type CliCommand, type Registration } from "./command.js";
import {
  commonOptions,
  deadlineOption,
  fetchOptions,
  overridesOf,
  parseDeadline,
  parseMode,
  verboseOption,
  type CommonArgs,
  type FetchArgs,
} from "./options.js";

function withCommon<T>(y: Argv<T>): Argv<T & CommonArgs> {
  const options: Record<string, Options> = { ...commonOptions, deadline: { ...deadlineOption, coerce: parseDeadline } };
  return y.options(options) as unknown as Argv<T & CommonArgs>;
}

export const fetchCommand: CliCommand<FetchArgs> = {
  command: "fetch",
  describe: "Resolve every reference in a spec and write all outputs, or nothing",
  options: (y) => withCommon(y).options(fetchOptions).demandOption("spec"),
  run: async (argv, log, signal) => {
    const { runFetch } = await import("../commands/fetch.js");
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
  },
};

type ReadArgs = CommonArgs & { ref: string; out?: string; mode: string };
const readCommand: CliCommand<ReadArgs> = {
  command: "read <ref>",
  describe: "Resolve one reference to stdout or a file",
  options: (y) =>
    withCommon(y)
      .positional("ref", { type: "string", demandOption: true, describe: "op://vault/item/[section/]field" })
      .option("out", { type: "string", describe: "Write to this file (atomically) instead of stdout" })
      .option("mode", { type: "string", default: "0600", describe: "Mode of --out" }),
  run: async (argv, log, signal) => {
    const { runRead } = await import("../commands/read.js");
    await runRead({
      ref: argv.ref,
      out: argv.out,
      mode: parseMode(argv.mode),
      overrides: overridesOf(argv),
      deadlineSeconds: argv.deadline,
      log,
      signal,
    });
  },
};

type CheckArgs = CommonArgs & { spec?: string; mapfile?: string };
const checkCommand: CliCommand<CheckArgs> = {
  command: "check",
  describe: "Validate a spec offline (used at Nix build time)",
  options: (y) =>
    withCommon(y)
      .option("spec", { type: "string", describe: "Spec file to check" })
      .option("mapfile", { type: "string", describe: "Mapfile to check" }),
  run: async (argv, log) => {
    if (!argv.spec && !argv.mapfile) throw usageError("check needs --spec FILE or --mapfile FILE");
    const { checkSpec, checkMapfile } = await import("../commands/check.js");
    if (argv.spec) process.stdout.write(`${await checkSpec(argv.spec, log)}\n`);
    if (argv.mapfile) process.stdout.write(`${await checkMapfile(argv.mapfile, log)}\n`);
  },
};

type CleanupArgs = CommonArgs & { spec: string; "output-dir"?: string };
const cleanupCommand: CliCommand<CleanupArgs> = {
  command: "cleanup",
  describe: "Remove what fetch wrote for a spec",
  options: (y) =>
    withCommon(y)
      .option("spec", { type: "string", demandOption: true })
      .option("output-dir", { type: "string", describe: "Clean this directory instead of the spec's outputDir" }),
  run: async (argv, log) => {
    const { runCleanup } = await import("../commands/cleanup.js");
    await runCleanup({ specFile: argv.spec, ...(argv["output-dir"] ? { outputDir: argv["output-dir"] } : {}), log });
  },
};

type AgentArgs = CommonArgs & { policy: string; ttl: number; fd: number; check: boolean };
const agentCommand: CliCommand<AgentArgs> = {
  command: "agent",
  describe: "Serve systemd LoadCredential= requests from the agent's front end (see homelab-secrets-agent)",
  options: (y) =>
    withCommon(y)
      .option("policy", {
        type: "string",
        demandOption: true,
        describe: "Agent policy file (JSON, version 1): unit → credential ID → what to render",
      })
      .option("ttl", {
        type: "number",
        default: 300,
        describe: "Serve values from memory for this many seconds (0: always ask the backend)",
      })
      .option("fd", { type: "number", default: 3, describe: "The front end's socketpair" })
      .option("check", { type: "boolean", default: false, describe: "Only validate the policy offline (used at Nix build time)" }),
  run: async (argv, log, signal) => {
    const { checkPolicy, runAgent } = await import("../commands/agent.js");
    if (argv.check) {
      process.stdout.write(`${await checkPolicy(argv.policy)}\n`);
      return;
    }
    await runAgent({
      policyFile: argv.policy,
      overrides: overridesOf(argv),
      ttlSeconds: argv.ttl,
      deadlineSeconds: argv.deadline,
      fd: argv.fd,
      log,
      signal,
    });
  },
};

type InstallArgs = CommonArgs & { spec: string };
const installCommand: CliCommand<InstallArgs> = {
  command: "install",
  describe: "Write a spec's outputs from the credentials systemd loaded from the agent ($CREDENTIALS_DIRECTORY)",
  options: (y) =>
    withCommon(y).option("spec", { type: "string", demandOption: true, describe: "Spec file: its outputs are the credential IDs" }),
  run: async (argv, log) => {
    const { runInstall } = await import("../agent/install.js");
    await runInstall({ specFile: argv.spec, log });
  },
};

const userCommand: CliCommand<UserArgs> = {
  command: "user",
  describe: "Fetch the secrets a mapfile assigns to you (op-secret-manager compatible; privileged through homelab-secrets-user)",
  options: (y) =>
    y
      .option("verbose", verboseOption)
      .option("cleanup", { type: "boolean", default: false, describe: "Remove your mapped files instead of writing them" })
      .option("serialize", { type: "boolean", default: false, describe: "Let one fetch run at a time (waits up to 5 minutes)" })
      .option("api-key-path", { type: "string", describe: "Token file (env OP_API_KEY_PATH; honoured only for root or unprivileged runs)" })
      .option("map-file-path", { type: "string", describe: "Mapfile (env OP_MAP_FILE_PATH; honoured only for root or unprivileged runs)" })
      .option("tags", { type: "string", describe: "Only entries with one of these comma-separated tags" })
      .option("untagged", { type: "boolean", default: false, describe: "Include untagged entries (alone: only untagged ones)" })
      .option("deadline", { ...deadlineOption, coerce: parseDeadline })
      .option("config-dir", { type: "string", default: defaultConfigDir, describe: "Host configuration directory (unprivileged runs)" }),
  // The wrapper's two halves say which one is talking; values never reach the log. A
  // stopped run must end at once: the writer's caller is waiting, and a fetcher left behind
  // would hold the --serialize lock.
  runOptions: () => {
    const role = process.env["HS_WRAPPER"] === "1" ? process.env["HS_ROLE"] : undefined;
    return {
      ...(role === "fetcher" || role === "writer" ? { prefix: `homelab-secrets user (${role})` } : {}),
      stopMessage: "nothing written",
    };
  },
  run: async (argv, log, signal) => {
    const { runUser } = await import("../commands/user.js");
    return runUser(argv, log, signal);
  },
};

const doctorCommand: CliCommand<DoctorArgs> = {
  command: "doctor",
  describe: "Check the host's per-user setup: token, mapfile, config.json and wrapper owners and modes",
  options: (y) =>
    y
      .option("config-dir", { type: "string", default: defaultConfigDir, describe: "Host configuration directory" })
      .option("wrapper", { type: "string", describe: `The SUID wrapper to check (default ${nixosWrapperPath} when present)` })
      .option("service-user", {
        type: "string",
        default: "homelab-secrets",
        describe: "The service account the wrapper runs the fetch as",
      }),
  run: async (argv) => {
    const { runDoctor, formatFindings } = await import("../commands/doctor.js");
    const findings = runDoctor({ configDir: argv["config-dir"], wrapper: argv.wrapper, serviceUser: argv["service-user"] });
    process.stdout.write(formatFindings(findings));
    return findings.every((f) => f.ok) ? ExitCode.ok : ExitCode.config;
  },
};

type DemoArgs = CommonArgs & { "output-dir"?: string };
const demoCommand: CliCommand<DemoArgs> = {
  command: "demo",
  describe: "Fetch the bundled example spec from the bundled demo vault into a temp dir and show it",
  options: (y) => withCommon(y).option("output-dir", { type: "string", describe: "Write here instead of a new temp dir" }),
  run: async (argv, log) => {
    const { runDemo } = await import("../commands/demo.js");
    process.stdout.write(await runDemo({ log, outputDir: argv["output-dir"] }));
  },
};

/** The commands, in --help order. */
export const commands: readonly Registration[] = [
  register(fetchCommand),
  register(readCommand),
  register(checkCommand),
  register(cleanupCommand),
  register(agentCommand),
  register(installCommand),
  register(userCommand),
  register(doctorCommand),
  register(demoCommand),
];
