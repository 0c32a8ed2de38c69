import { spawn } from "node:child_process";
import { configError, tempFailError, usageError } from "../errors.js";
import type { Logger } from "../log.js";

/** What a refresh does to the consumer when its files changed. */
export type OnChange = "restart" | "reload";

/**
 * The job mode of every restart or reload a refresh asks for. The secrets unit is PartOf= its
 * service: a plain restart of the service would restart the secrets unit too, which fetches
 * again (a second backend batch) and, for a RuntimeDirectory=, removes and recreates the files
 * the refresh just wrote. "ignore-requirements" leaves requirement dependencies (and the
 * PartOf= propagation) out of the transaction, so only the service restarts and reads the
 * files as written; ordering dependencies are still honoured, so a start or restart of the
 * secrets unit already queued runs first.
 */
export const refreshJobMode = "ignore-requirements";

/** systemctl's verbs for each action: "try-" so that a stopped service stays stopped. */
export const systemctlVerb: Readonly<Record<OnChange, string>> = {
  restart: "try-restart",
  reload: "try-reload-or-restart",
};

// systemd's unit-name characters; no leading "-", so a name can never be read as a flag.
const unitNamePattern = /^[A-Za-z0-9:_.\\@][A-Za-z0-9:_.\\@-]*$/;

/** A unit name for --restart/--reload, or a usage error naming the flag. */
export function parseUnitName(name: string, flag: string): string {
  if (!unitNamePattern.test(name) || name.length > 255) {
    throw usageError(`${flag} must be a systemd unit name such as "myapp.service", not "${name.slice(0, 80)}"`);
  }
  return name;
}

/** The argv after "systemctl" for `action` on `units` (unit names only, nothing else). */
export function systemctlArgs(action: OnChange, units: readonly string[]): string[] {
  return [systemctlVerb[action], `--job-mode=${refreshJobMode}`, ...units];
}

/**
 * Run systemctl from PATH and wait for it: systemctl waits for the job to finish. `done` says
 * in an error what the refresh did already (default: the files are rewritten).
 */
export async function runSystemctl(
  action: OnChange,
  units: readonly string[],
  log: Logger,
  done = "the new files are written",
): Promise<void> {
  const args = systemctlArgs(action, units);
  log.debug(`running systemctl ${args.join(" ")}`);
  const result = await new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve, reject) => {
    const child = spawn("systemctl", args, { stdio: ["ignore", "inherit", "inherit"] });
    child.once("error", reject);
    child.once("exit", (code, signal) => resolve({ code, signal }));
  }).catch((error: unknown) => {
    const code = (error as NodeJS.ErrnoException).code;
    if (code === "ENOENT") throw configError(`systemctl not found on PATH; ${done} but nothing was restarted`);
    throw tempFailError(`cannot run systemctl: ${code ?? String(error)}; ${done} but nothing was restarted`);
  });
  if (result.code !== 0) {
    const how = result.signal ? `killed by ${result.signal}` : `exit ${result.code}`;
    throw tempFailError(`systemctl ${args.join(" ")} failed (${how}); ${done}`);
  }
}
