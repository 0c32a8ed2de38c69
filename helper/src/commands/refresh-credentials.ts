import { constants } from "node:fs";
import { open, stat } from "node:fs/promises";
import { join } from "node:path";
import { configError, permissionError, tempFailError, usageError } from "../errors.js";
import type { Logger } from "../log.js";
import { isCredentialId } from "../agent/peer.js";
import { runSystemctl } from "../refresh/systemctl.js";

export interface RefreshCredentialsOptions {
  /** The service whose credentials are compared (e.g. "web.service"). */
  readonly service: string;
  /** The credential IDs both units load. */
  readonly ids: readonly string[];
  /** Restart the service when a credential changed; false: only log it. */
  readonly restart: boolean;
  /** Where this unit's own (fresh) credentials are; default $CREDENTIALS_DIRECTORY. */
  readonly freshDir?: string;
  /**
   * Where the running service's credentials are; default /run/credentials/<service> as PID 1
   * sees it (/proc/1/root/…): under systemd 257 (not 252) a unit with credentials of its own
   * (this one) sees only those under /run/credentials, and the service's would look absent.
   */
  readonly runningDir?: string;
  readonly log: Logger;
  /** Restarts the service; default `systemctl try-restart --job-mode=ignore-requirements`. */
  readonly restartService?: (service: string) => Promise<void>;
}

/** What a run found; logged by ID, never by value. */
export type RefreshCredentialsOutcome =
  | { readonly kind: "not-running" }
  | { readonly kind: "unchanged" }
  | { readonly kind: "changed"; readonly ids: readonly string[]; readonly restarted: boolean };

const unreadable = (path: string, error: unknown): Error => {
  const code = (error as NodeJS.ErrnoException).code;
  return code === "EACCES" || code === "EPERM"
    ? permissionError(`cannot read ${path}: ${code} (root with CAP_DAC_OVERRIDE and CAP_SYS_PTRACE reads it)`)
    : (error as Error);
};

const readAll = async (path: string): Promise<Buffer | undefined> => {
  let handle;
  try {
    handle = await open(path, constants.O_RDONLY | constants.O_NOFOLLOW);
  } catch (error) {
    // ELOOP: a symlink (O_NOFOLLOW); neither it nor a missing file is what systemd wrote.
    const code = (error as NodeJS.ErrnoException).code;
    if (code === "ENOENT" || code === "ELOOP") return undefined;
    throw unreadable(path, error);
  }
  try {
    if (!(await handle.stat()).isFile()) return undefined;
    return await handle.readFile();
  } finally {
    await handle.close();
  }
};

/**
 * What `<service>-secrets-refresh.service` runs for a `delivery = "credentials"` service: its
 * own credentials were just loaded fresh from the agent; any that differs byte for byte from
 * what the running service loaded restarts the service (whose loads then get the new values
 * from the agent's memory). A service not running is left alone; a credential of this unit
 * that is missing or empty (the agent or its backend failed) fails the run, the service untouched.
 */
export async function runRefreshCredentials(options: RefreshCredentialsOptions): Promise<RefreshCredentialsOutcome> {
  const { service, ids, log } = options;
  if (ids.length === 0) throw usageError("refresh-credentials needs at least one credential ID");
  for (const id of ids) if (!isCredentialId(id)) throw usageError(`"${id.slice(0, 80)}" is not a valid credential ID`);
  const freshDir = options.freshDir ?? process.env["CREDENTIALS_DIRECTORY"];
  if (!freshDir)
    throw configError("no $CREDENTIALS_DIRECTORY: run this from a unit with LoadCredential=ID:<the agent's socket> for each ID");
  const runningDir = options.runningDir ?? join("/proc/1/root/run/credentials", service);
  const running = await stat(runningDir).catch((error: NodeJS.ErrnoException) => {
    if (error.code === "ENOENT") return undefined;
    throw unreadable(runningDir, error);
  });
  if (!running?.isDirectory()) {
    log.info(`${service}: not running (no ${runningDir}); nothing to compare, nothing restarted`);
    return { kind: "not-running" };
  }

  const changed: string[] = [];
  for (const id of ids) {
    const fresh = await readAll(join(freshDir, id));
    // systemd leaves an empty file when the agent closed without answering: never a value.
    if (fresh === undefined || fresh.length === 0)
      throw tempFailError(
        `credential ${id} was not loaded (${fresh === undefined ? "missing" : "empty"}): the agent or its backend failed (see homelab-secrets-agent.service's journal); ${service} left untouched`,
      );
    const current = await readAll(join(runningDir, id));
    if (current === undefined || current.length !== fresh.length || !current.equals(fresh)) changed.push(id);
  }
  if (changed.length === 0) {
    log.info(`${service}: ${ids.length} credential(s) unchanged; nothing restarted`);
    return { kind: "unchanged" };
  }
  log.info(`${service}: credential(s) changed: ${changed.join(", ")}${options.restart ? "; restarting it" : " (no restart asked for)"}`);
  if (!options.restart) return { kind: "changed", ids: changed, restarted: false };
  await (
    options.restartService ??
    ((unit: string) => runSystemctl("restart", [unit], log, "the agent holds the new values (the next start gets them)"))
  )(service);
  log.info(`${service}: restarted`);
  return { kind: "changed", ids: changed, restarted: true };
}
