/**
 * Every command of the CLI, in one shape (CliCommand): its flags here, its work in
 * ../commands/*.ts, loaded only when it runs. To add one, define it below and list it in
 * `commands`.
 */
import type { Argv, Options } from "yargs";
import { ExitCode, usageError } from "../errors.js";
import type { DoctorArgs } from "../commands/doctor.js";
import type { UserArgs } from "../commands/user.js";
import { defaultConfigDir, nixosWrapperPath, packageWrapperPath } from "../host-paths.js";
import { register, type CliCommand, type Registration } from "./command.js";
import {
  commonOptions,
  deadlineOption,
  fetchOptions,
  overridesOf,
  parseMode,
  refreshOptions,
  verboseOption,
  type CommonArgs,
  type FetchArgs,
  type RefreshArgs,
} from "./options.js";

/** The flags of a command that resolves references but takes no lock. */
type SourceArgs = Omit<CommonArgs, "serialize">;

/** The source flags, --deadline and --verbose (not --serialize, which only fetch honours). */
function withSource<T>(y: Argv<T>): Argv<T & SourceArgs> {
  const { source, "connect-host": connectHost, "token-credential": tokenCredential, "token-file": tokenFile, verbose } = commonOptions;
  const all: Record<string, Options> = {
    source,
    "connect-host": connectHost,
    "token-credential": tokenCredential,
    "token-file": tokenFile,
    deadline: deadlineOption,
    verbose,
  };
  return y.options(all) as unknown as Argv<T & SourceArgs>;
}

/** The flag of a command that only logs. */
interface VerboseArgs {
  verbose: boolean;
}

function withVerbose<T>(y: Argv<T>): Argv<T & VerboseArgs> {
  return y.option("verbose", verboseOption);
}

/** A whole-or-fractional number of seconds from 0 to `max`, else a usage error naming the flag. */
function parseSeconds(flag: string, value: number, max: number): number {
  if (!Number.isFinite(value) || value < 0 || value > max) {
    throw usageError(`--${flag} must be a number of seconds from 0 to ${max}, not "${String(value)}"`);
  }
  return value;
}

type ExitCodeName = keyof typeof ExitCode;

/** What each exit code means, as --help says it; a new ExitCode needs its line here. */
const exitCodeMeaning: Readonly<Record<ExitCodeName, string>> = {
  ok: "success",
  usage: "usage: a wrong flag or argument",
  dataErr: "bad data: spec, mapfile, policy, reference or an unrepresentable value",
  notFound: "a reference does not exist (every missing one is named)",
  software: "internal error (a bug; the log line carries the stack)",
  osErr: "the privilege wrapper only: an OS call failed",
  cantCreate: "cannot write (no space, permissions, unsafe path)",
  tempFail: "temporary failure: backend unreachable or rate-limited past retries and --deadline",
  noPerm: "permission: token rejected, auth failed, privilege check failed",
  config: "configuration: token or file missing, unreadable or too open; unsafe permissions",
};

/** The "Exit codes:" epilogue for `names`, numbers from ExitCode, in numeric order. */
export function exitCodesEpilogue(names: readonly ExitCodeName[]): string {
  const sorted = [...names].sort((a, b) => ExitCode[a] - ExitCode[b]);
  return ["Exit codes:", ...sorted.map((name) => `  ${String(ExitCode[name]).padEnd(3)} ${exitCodeMeaning[name]}`)].join("\n");
}

/** Every command can end with these. */
const always: readonly ExitCodeName[] = ["ok", "usage", "software"];
/** What a command that resolves and writes can end with. */
const resolving: readonly ExitCodeName[] = [...always, "dataErr", "notFound", "cantCreate", "tempFail", "noPerm", "config"];

/** --help's examples (`$0` is the program name) and exit-code epilogue of one command. */
function documented<T>(y: Argv<T>, examples: readonly (readonly [string, string])[], codes: readonly ExitCodeName[]): Argv<T> {
  let out = y;
  for (const [command, description] of examples) out = out.example(command, description);
  return out.epilogue(exitCodesEpilogue(codes));
}

export const fetchCommand: CliCommand<FetchArgs> = {
  command: "fetch",
  describe: "Resolve every reference in a spec and write all outputs, or nothing",
  table: { ...commonOptions, ...fetchOptions },
  options: (y) =>
    documented(
      y.options(fetchCommand.table as Record<string, Options>) as unknown as Argv<FetchArgs>,
      [
        [
          "$0 fetch --spec /etc/homelab-secrets/services/myapp.json",
          "What the secrets unit runs (token from $CREDENTIALS_DIRECTORY/op-token)",
        ],
        ["$0 fetch --spec spec.json --source file:vault.json --verbose", "From a local JSON vault, logging each reference and file"],
        ["$0 fetch --spec spec.json --source connect --connect-host https://connect.lan --token-file ./token", "Through 1Password Connect"],
      ],
      resolving,
    ),
  run: async (argv, log, signal) => {
    const { runFetch } = await import("../commands/fetch.js");
    await runFetch({
      specFile: argv.spec,
      overrides: overridesOf(argv),
      deadlineSeconds: argv.deadline,
      serialize: argv.serialize,
      ...(process.env["HOMELAB_SECRETS_LOCK"] ? { lockPath: process.env["HOMELAB_SECRETS_LOCK"] } : {}),
      ...(argv["output-dir"] ? { outputDir: argv["output-dir"] } : {}),
      ...(argv.cache
        ? {
            cache: {
              dir: argv["cache-dir"],
              markerDir: argv["cache-marker-dir"],
              maxAgeSeconds: argv["cache-max-age"],
              reuseSeconds: argv["cache-reuse"],
            },
          }
        : {}),
      log,
      signal,
    });
  },
};

export const refreshCommand: CliCommand<RefreshArgs> = {
  command: "refresh",
  describe: "Fetch a running service's secrets again; rewrite them and restart (or reload) it only if something changed",
  table: { ...commonOptions, ...refreshOptions },
  options: (y) =>
    documented(
      y.options(refreshCommand.table as Record<string, Options>) as unknown as Argv<RefreshArgs>,
      [
        [
          "$0 refresh --spec /etc/homelab-secrets/services/myapp.json --restart myapp.service",
          "What <name>-secrets-refresh.service runs: unchanged → nothing written, nothing restarted",
        ],
        ["$0 refresh --spec spec.json --reload nginx.service", "Reload instead of restart when a value rotated"],
        [
          "$0 refresh --spec spec.json --from-credentials --restart myapp.service",
          "What it runs with throughAgent: the files from the agent's fresh credentials",
        ],
      ],
      resolving,
    ),
  run: async (argv, log, signal) => {
    const { parseUnitName } = await import("../refresh/systemctl.js");
    const { runRefresh } = await import("../commands/refresh.js");
    const restart = (argv.restart ?? []).map((u) => parseUnitName(u, "--restart"));
    const reload = (argv.reload ?? []).map((u) => parseUnitName(u, "--reload"));
    const onChange =
      restart.length > 0
        ? { action: "restart" as const, units: restart }
        : reload.length > 0
          ? { action: "reload" as const, units: reload }
          : undefined;
    await runRefresh({
      specFile: argv.spec,
      overrides: overridesOf(argv),
      deadlineSeconds: argv.deadline,
      serialize: argv.serialize,
      ...(process.env["HOMELAB_SECRETS_LOCK"] ? { lockPath: process.env["HOMELAB_SECRETS_LOCK"] } : {}),
      ...(onChange ? { onChange } : {}),
      ...(argv["from-credentials"] ? { fromCredentials: true } : {}),
      ...(argv.cache ? { cache: { dir: argv["cache-dir"], markerDir: argv["cache-marker-dir"] } } : {}),
      log,
      signal,
    });
  },
};

type RefreshCredentialsArgs = VerboseArgs & { service: string; id: string[]; restart: boolean };
const refreshCredentialsCommand: CliCommand<RefreshCredentialsArgs> = {
  command: "refresh-credentials",
  describe: "Compare this unit's fresh agent credentials with a running service's; restart it only if one changed",
  options: (y) =>
    documented(
      withVerbose(y)
        .option("id", { type: "string", array: true, demandOption: true, describe: "A credential ID both units load (--id=ID, repeated)" })
        .option("service", { type: "string", demandOption: true, describe: "The service whose /run/credentials/<service> is compared" })
        .option("restart", { type: "boolean", default: true, describe: "systemctl try-restart it when a credential changed" }),
      [
        [
          "$0 refresh-credentials --service web.service --id=db --id=app.env",
          'What <name>-secrets-refresh.service runs for delivery = "credentials": unchanged → nothing restarted',
        ],
      ],
      [...always, "cantCreate", "tempFail", "noPerm", "config"],
    ),
  run: async (argv, log) => {
    const { parseUnitName } = await import("../refresh/systemctl.js");
    const { runRefreshCredentials } = await import("../commands/refresh-credentials.js");
    await runRefreshCredentials({ service: parseUnitName(argv.service, "--service"), ids: argv.id, restart: argv.restart, log });
  },
};

type ReadArgs = SourceArgs & { ref: string; out?: string; mode: string };
const readCommand: CliCommand<ReadArgs> = {
  command: "read <ref>",
  describe: "Resolve one reference to stdout or a file",
  options: (y) =>
    documented(
      withSource(y)
        .positional("ref", { type: "string", demandOption: true, describe: "op://vault/item/[section/]field" })
        .option("out", { type: "string", describe: "Write to this file (atomically) instead of stdout" })
        .option("mode", { type: "string", default: "0600", describe: "Mode of --out" }),
      [
        ["$0 read op://Homelab/Grafana/password --token-file ./token", "Print one value (exact bytes) to stdout"],
        ["$0 read 'op://Homelab/GitHub/one-time password?attribute=otp' --token-file ./token", "The current TOTP code"],
        ["$0 read op://Homelab/Grafana/password --out /run/grafana/pw --mode 0400 --token-file ./token", "Write it atomically to a file"],
      ],
      resolving,
    ),
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

type CheckArgs = VerboseArgs & { spec?: string; mapfile?: string };
const checkCommand: CliCommand<CheckArgs> = {
  command: "check",
  describe: "Validate a spec offline (used at Nix build time)",
  options: (y) =>
    documented(
      withVerbose(y)
        .option("spec", { type: "string", describe: "Spec file to check" })
        .option("mapfile", { type: "string", describe: "Mapfile to check" }),
      [
        ["$0 check --spec /etc/homelab-secrets/services/myapp.json", "Validate a spec offline; errors name file, line and field"],
        ["$0 check --mapfile /etc/homelab-secrets/mapfile", "Validate a mapfile (and its owner and mode)"],
      ],
      [...always, "dataErr", "config"],
    ),
  run: async (argv, log) => {
    if (!argv.spec && !argv.mapfile) throw usageError("check needs --spec FILE or --mapfile FILE");
    const { checkSpec, checkMapfile } = await import("../commands/check.js");
    if (argv.spec) process.stdout.write(`${await checkSpec(argv.spec, log)}\n`);
    if (argv.mapfile) process.stdout.write(`${await checkMapfile(argv.mapfile, log)}\n`);
  },
};

type CleanupArgs = VerboseArgs & { spec: string; "output-dir"?: string; "cache-marker-dir": string };
const cleanupCommand: CliCommand<CleanupArgs> = {
  command: "cleanup",
  describe: "Remove what fetch wrote for a spec",
  options: (y) =>
    documented(
      withVerbose(y)
        .option("spec", { type: "string", demandOption: true, describe: "Spec file whose outputs to remove" })
        .option("output-dir", { type: "string", describe: "Clean this directory instead of the spec's outputDir" })
        .option("cache-marker-dir", { ...fetchOptions["cache-marker-dir"], describe: "Where fetch --cache records cached-values markers" }),
      [
        ["$0 cleanup --spec /etc/homelab-secrets/services/myapp.json", "What the secrets unit's ExecStop= runs"],
        ["$0 cleanup --spec spec.json --output-dir /tmp/demo-secrets", "Remove what fetch --output-dir (or demo) wrote"],
      ],
      [...always, "dataErr", "cantCreate", "config"],
    ),
  run: async (argv, log) => {
    const { runCleanup } = await import("../commands/cleanup.js");
    await runCleanup({
      specFile: argv.spec,
      ...(argv["output-dir"] ? { outputDir: argv["output-dir"] } : {}),
      markerDir: argv["cache-marker-dir"],
      log,
    });
  },
};

type AgentArgs = SourceArgs & {
  policy: string;
  ttl: number;
  "not-found-ttl"?: number;
  fd: number;
  check: boolean;
  cache: boolean;
  "cache-dir": string | undefined;
  "cache-key": string | undefined;
  "cache-max-age": number;
};
const agentCommand: CliCommand<AgentArgs> = {
  command: "agent",
  describe: "Serve systemd LoadCredential= requests from the agent's front end (see homelab-secrets-agent)",
  options: (y) =>
    documented(
      withSource(y)
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
        .option("not-found-ttl", {
          type: "number",
          describe:
            "Refuse a request whose references the backend does not have (69) from memory for this many seconds (default: the smaller of --ttl and 30; 0: ask every time)",
          coerce: (v: number) => parseSeconds("not-found-ttl", v, 86400),
        })
        .option("fd", { type: "number", default: 3, describe: "The front end's socketpair" })
        .option("check", { type: "boolean", default: false, describe: "Only validate the policy offline (used at Nix build time)" })
        .option("cache", {
          type: "boolean",
          default: false,
          describe: "Seal every fresh batch's values; serve them when the backend fails temporarily (75)",
        })
        .option("cache-dir", { type: "string", describe: "Where the sealed values are (default: $STATE_DIRECTORY)" })
        .option("cache-key", { type: "string", describe: "The 32-byte key (default: $CREDENTIALS_DIRECTORY/agent-cache-key)" })
        .option("cache-max-age", { ...fetchOptions["cache-max-age"], describe: "Never serve cached values older than this many seconds" }),
      [
        ["$0 agent --check --policy policy.json", "Validate an agent policy offline"],
        [
          "homelab-secrets-agent --idle-exit 300 -- $0 agent --policy %d/agent-policy --ttl 300 --deadline 45",
          "How the agent's unit starts it (the front end owns the socket)",
        ],
      ],
      [...always, "dataErr", "notFound", "tempFail", "noPerm", "config"],
    ),
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
      ...(argv["not-found-ttl"] !== undefined ? { notFoundSeconds: argv["not-found-ttl"] } : {}),
      deadlineSeconds: argv.deadline,
      fd: argv.fd,
      log,
      signal,
      ...(argv.cache
        ? {
            cache: {
              maxAgeSeconds: argv["cache-max-age"],
              ...(argv["cache-dir"] ? { dir: argv["cache-dir"] } : {}),
              ...(argv["cache-key"] ? { keyFile: argv["cache-key"] } : {}),
            },
          }
        : {}),
    });
  },
};

type InstallArgs = VerboseArgs & { spec: string };
const installCommand: CliCommand<InstallArgs> = {
  command: "install",
  describe: "Write a spec's outputs from the credentials systemd loaded from the agent ($CREDENTIALS_DIRECTORY)",
  options: (y) =>
    documented(
      withVerbose(y).option("spec", { type: "string", demandOption: true, describe: "Spec file: its outputs are the credential IDs" }),
      [
        [
          "$0 install --spec /etc/homelab-secrets/services/myapp.json",
          "In a unit with LoadCredential=<output>:/run/homelab-secrets/credentials.sock",
        ],
      ],
      [...always, "dataErr", "cantCreate", "config"],
    ),
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
      .option("deadline", deadlineOption)
      .option("config-dir", { type: "string", default: defaultConfigDir, describe: "Host configuration directory (unprivileged runs)" })
      .example("homelab-secrets-user --tags dev", "Through the SUID wrapper: your entries tagged dev")
      .example("homelab-secrets-user --cleanup", "Remove your mapped files")
      .example("$0 user --api-key-path ./token --map-file-path ./mapfile", "Without the wrapper, with your own token and mapfile")
      .epilogue(exitCodesEpilogue([...resolving, "osErr"])),
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
      .option("wrapper", {
        type: "string",
        describe: `The SUID wrapper to check (default: ${nixosWrapperPath}, else ${packageWrapperPath}, when present)`,
      })
      .option("service-user", {
        type: "string",
        default: "homelab-secrets",
        describe: "The service account the wrapper runs the fetch as",
      })
      .option("cache-marker-dir", {
        ...fetchOptions["cache-marker-dir"],
        describe: "Where fetch --cache records services on cached values",
      })
      .example("$0 doctor", "Check the default configuration directory and wrapper")
      .example("$0 doctor --config-dir /etc/homelab-secrets --wrapper /usr/bin/homelab-secrets-user", "The Debian package's paths")
      .epilogue(exitCodesEpilogue([...always, "config"])),
  run: async (argv) => {
    const { runDoctor, formatFindings } = await import("../commands/doctor.js");
    const findings = runDoctor({
      configDir: argv["config-dir"],
      wrapper: argv.wrapper,
      serviceUser: argv["service-user"],
      markerDir: argv["cache-marker-dir"],
    });
    process.stdout.write(formatFindings(findings));
    return findings.every((f) => f.ok) ? ExitCode.ok : ExitCode.config;
  },
};

type DemoArgs = VerboseArgs & { "output-dir"?: string };
const demoCommand: CliCommand<DemoArgs> = {
  command: "demo",
  describe: "Fetch the bundled example spec from the bundled demo vault into a temp dir and show it",
  options: (y) =>
    documented(
      withVerbose(y).option("output-dir", { type: "string", describe: "Write here instead of a new temp dir" }),
      [
        ["$0 demo", "No 1Password account needed: bundled spec, bundled vault, a fresh temp dir"],
        ["$0 demo --output-dir /tmp/demo-secrets --verbose", "Into a directory of your choice, logging each step"],
      ],
      [...always, "cantCreate"],
    ),
  run: async (argv, log) => {
    const { runDemo } = await import("../commands/demo.js");
    process.stdout.write(await runDemo({ log, outputDir: argv["output-dir"] }));
  },
};

/** The commands, in --help order. */
export const commands: readonly Registration[] = [
  register(fetchCommand),
  register(refreshCommand),
  register(refreshCredentialsCommand),
  register(readCommand),
  register(checkCommand),
  register(cleanupCommand),
  register(agentCommand),
  register(installCommand),
  register(userCommand),
  register(doctorCommand),
  register(demoCommand),
];
