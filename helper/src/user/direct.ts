/**
 * `homelab-secrets user` run directly, without the privilege wrapper: an ordinary user with
 * their own token and mapfile, or root. Nothing is privileged here, so the path overrides
 * are honoured (flag > env > default, as op-secret-manager).
 */
import { constants, existsSync } from "node:fs";
import { open } from "node:fs/promises";
import { userInfo } from "node:os";
import { join } from "node:path";
import { userNameOf } from "../accounts.js";
import { cantCreateError, configError, permissionError } from "../errors.js";
import type { Logger } from "../log.js";
import type { SourceConfig } from "../spec.js";
import { accessibleToOthers, modeDigits, rootControlled } from "../file-rules.js";
import { tokenFromText } from "../token.js";
import { removeUserFiles, writeUserFiles } from "./files.js";
import { planEntries, requireRuntimeDirectory, resolvePlanned, tagFilter, type Caller } from "./plan.js";
import { parseHostConfig } from "./host-config.js";

export interface DirectOptions {
  readonly configDir: string;
  readonly apiKeyPath: string | undefined;
  readonly mapFilePath: string | undefined;
  readonly cleanup: boolean;
  readonly serialize: boolean;
  readonly tags: string | undefined;
  readonly untagged: boolean;
  readonly deadlineSeconds: number;
  readonly log: Logger;
  readonly signal: AbortSignal;
  readonly environment?: NodeJS.ProcessEnv;
}

/** flag > env > default (op-secret-manager's precedence). */
export function chooseUserPaths(options: Pick<DirectOptions, "configDir" | "apiKeyPath" | "mapFilePath" | "environment">) {
  const environment = options.environment ?? process.env;
  return {
    tokenPath: options.apiKeyPath || environment["OP_API_KEY_PATH"] || join(options.configDir, "token"),
    mapfilePath: options.mapFilePath || environment["OP_MAP_FILE_PATH"] || join(options.configDir, "mapfile"),
  };
}

export async function runDirect(options: DirectOptions): Promise<void> {
  const { log } = options;
  const uid = process.getuid!();
  if (process.geteuid!() !== uid || process.getegid!() !== process.getgid!()) {
    throw permissionError("homelab-secrets user must not run set-id; install the wrapper (homelab-secrets-user) instead");
  }
  const caller: Caller = { uid, user: userNameOf(uid) ?? userInfo().username };
  const { tokenPath, mapfilePath } = chooseUserPaths(options);

  const mapfile = await readConfigFile(mapfilePath, false, uid === 0 ? "mapfile" : undefined);
  const planned = planEntries(mapfile!, mapfilePath, caller, tagFilter(options.tags, options.untagged), false);
  log.debug(`${planned.length} entr${planned.length === 1 ? "y" : "ies"} for ${caller.user} (uid ${uid}) in ${mapfilePath}`);
  if (options.cleanup) {
    const removed = await removeUserFiles(
      planned.map((p) => p.path),
      uid,
      log,
    );
    log.info(`${caller.user}: removed ${removed} of ${planned.length} file(s)`);
    return;
  }

  requireRuntimeDirectory(planned, mapfilePath, caller);
  const configPath = join(options.configDir, "config.json");
  const configText = await readConfigFile(configPath, true, uid === 0 ? "config" : undefined);
  const sourceConfig: SourceConfig = configText === undefined ? { type: "onepassword" } : parseHostConfig(configText, configPath);
  const token =
    sourceConfig.type === "file" || planned.length === 0
      ? undefined
      : tokenFromText((await readConfigFile(tokenPath, false, "token"))!, tokenPath);

  // root shares the host-wide lock; a user serializes their own runs.
  const lock = options.serialize ? { lock: uid === 0 ? {} : { path: userLockPath(caller) } } : {};
  const files = await resolvePlanned(planned, sourceConfig, token, {
    deadlineSeconds: options.deadlineSeconds,
    log,
    signal: options.signal,
    tokenPath,
    ...lock,
  });
  await writeUserFiles(files, uid, log);
  log.info(`${caller.user}: wrote ${files.length} file(s)`);
}

/** Where a direct run of a user keeps its --serialize lock; an account without it is told what to do. */
function userLockPath(caller: Caller): string {
  const runtimeDir = `/run/user/${caller.uid}`;
  if (!existsSync(runtimeDir)) {
    throw cantCreateError(
      `--serialize keeps its lock in ${runtimeDir}, which ${caller.user} does not have (no login session): ` +
        `run through the wrapper (homelab-secrets-user --serialize needs no such directory), or loginctl enable-linger ${caller.user}`,
    );
  }
  return `${runtimeDir}/homelab-secrets-user.lock`;
}

/**
 * Read a host file. `rule`: "mapfile"/"config" for root (must be root-owned and not
 * group/other-writable, op-secret-manager's root rule); "token" (not accessible to
 * group/others). Absent optional files give undefined.
 */
async function readConfigFile(
  path: string,
  optional: boolean,
  rule: "mapfile" | "config" | "token" | undefined,
): Promise<string | undefined> {
  let handle;
  try {
    handle = await open(path, constants.O_RDONLY | constants.O_NONBLOCK);
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    if (optional && code === "ENOENT") return undefined;
    throw configError(`cannot open ${path}: ${code ?? "error"}`);
  }
  try {
    const stats = await handle.stat();
    if (!stats.isFile()) throw configError(`${path} is not a regular file`);
    const mode = modeDigits(stats.mode);
    if ((rule === "mapfile" || rule === "config") && !rootControlled(stats)) {
      throw configError(
        `unsafe ${path}: root may use only a root-owned file that group and others cannot write (owner uid ${stats.uid}, mode ${mode})`,
      );
    }
    if (rule === "token" && accessibleToOthers(stats)) {
      throw configError(`unsafe token ${path}: mode ${mode}, must not be accessible to group or others (chmod 600)`);
    }
    return await handle.readFile("utf8");
  } finally {
    await handle.close();
  }
}
