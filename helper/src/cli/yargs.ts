import yargs from "yargs";
import { ExitCode, isHomelabError } from "../errors.js";
import { createLogger } from "../log.js";
import { version } from "../version.js";
import { commands } from "./commands.js";

/** The full CLI: every command, --help, --version; usage errors exit 64. */
export function buildCli(args: string[]) {
  let cli = yargs(args)
    .scriptName("homelab-secrets")
    .usage("$0 <command> [options]\n\nDeliver 1Password secrets to systemd services and Linux users.");
  for (const add of commands) cli = add(cli);
  return cli
    .demandCommand(1, "name a command (see --help)")
    .strict()
    .version(version)
    .help()
    .alias("help", "h")
    .wrap(Math.min(100, process.stdout.columns || 100))
    .fail((message, error) => {
      // yargs wraps errors thrown by option parsing (coerce) in a YError: a usage error.
      // Commands end in runAndExit, so any other error reaching here is yargs' own bug.
      if (error && error.name !== "YError" && !isHomelabError(error)) throw error;
      const log = createLogger();
      log.error(error?.message ?? message);
      log.info('Run "homelab-secrets --help" for usage.');
      process.exit(ExitCode.usage);
    });
}
