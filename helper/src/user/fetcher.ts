/**
 * The wrapper's fetcher half (it runs as the service account): reads the mapfile, token and
 * config.json from descriptors the wrapper opened, resolves only the caller's entries and
 * hands the values to the writer as frames (protocol.ts).
 */
import { closeSync, readFileSync, write } from "node:fs";
import { ExitCode, failureOf, permissionError, tempFailError, usageError } from "../errors.js";
import type { Logger } from "../log.js";
import type { SourceConfig } from "../spec.js";
import { tokenFromText } from "../token.js";
import { parseHostSettings } from "./host-config.js";
import { planEntries, requireRuntimeDirectory, resolvePlanned, tagFilter } from "./plan.js";
import { encodeFrame, env, fdFromEnv, type Frame, type WrapperContext } from "./protocol.js";
import { countFetch, defaultRateLimit, type RateLimit } from "./rate-limit.js";

/** The flags of a wrapped run, for either half. */
export interface RoleOptions {
  readonly cleanup: boolean;
  readonly tags: string | undefined;
  readonly untagged: boolean;
  readonly deadlineSeconds: number;
  /** Path overrides must never reach a wrapped run; the wrapper does not forward them. */
  readonly overrides: boolean;
  readonly log: Logger;
  readonly signal: AbortSignal;
}

/** Run the fetcher; its errors travel to the writer as an error frame, the exit code only mirrors them. */
export async function runFetcher(context: WrapperContext, options: RoleOptions): Promise<number> {
  const { log } = options;
  const outFd = fdFromEnv(env.outFd);
  if (outFd === undefined) throw usageError(`${env.outFd} is not set`);
  // The writer (our parent, the caller) may not signal us, so watch for it going away:
  // a caller who stops the run must not leave a fetch running in the background.
  // The wrapper names the parent: one that died before we got here is noticed too.
  const parent = Number(process.env[env.writerPid] ?? process.ppid);
  const watch = setInterval(() => {
    if (process.ppid === parent) return;
    log.warn("the writer went away; stopping");
    process.exit(ExitCode.tempFail);
  }, 200);
  watch.unref();
  if (process.ppid !== parent) {
    log.warn("the writer went away; stopping");
    return ExitCode.tempFail;
  }
  let frames: Frame[];
  let code: number = ExitCode.ok;
  try {
    frames = await fetchFrames(context, options);
  } catch (error) {
    const failure = failureOf(error);
    code = failure.exitCode;
    // The stack stays in the service account's log; the caller learns only that it was a bug.
    if (failure.internal) log.error(failure.line);
    frames = [{ type: "error", exitCode: code, message: failure.internal ? "internal error in the fetcher" : failure.line }];
  }
  // A writer that stops reading must not keep us (and the --serialize lock) forever.
  const guard = setTimeout(() => {
    log.error("the writer did not take the values in time; giving up");
    process.exit(ExitCode.tempFail);
  }, 30_000);
  try {
    for (const frame of frames) await writeAll(outFd, encodeFrame(frame));
  } finally {
    clearTimeout(guard);
    closeSync(outFd);
  }
  return code;
}

async function fetchFrames(context: WrapperContext, options: RoleOptions): Promise<Frame[]> {
  const { log } = options;
  const { caller } = context;
  if (options.overrides) throw permissionError("path overrides are not accepted from the wrapper");
  const mapFd = fdFromEnv(env.mapfileFd);
  if (mapFd === undefined) throw usageError(`${env.mapfileFd} is not set`);
  const tokenFd = fdFromEnv(env.tokenFd);
  const configFd = fdFromEnv(env.configFd);
  const configDir = context.mapfilePath.replace(/\/[^/]*$/, "") || "/";
  log.debug(`fetcher: running as uid ${process.getuid!()} gid ${process.getgid!()} groups [${process.getgroups!().join(",")}]`);

  try {
    const planned = planEntries(readFileSync(mapFd, "utf8"), context.mapfilePath, caller, tagFilter(options.tags, options.untagged), true);
    log.debug(`fetcher: ${planned.length} entr${planned.length === 1 ? "y" : "ies"} for ${caller.user} (uid ${caller.uid})`);
    if (options.cleanup) return [...planned.map((p): Frame => ({ type: "cleanup", path: p.path })), { type: "done" }];
    requireRuntimeDirectory(planned, context.mapfilePath, caller);

    let sourceConfig: SourceConfig = { type: "onepassword" };
    let rateLimit: RateLimit | null = defaultRateLimit;
    if (configFd !== undefined) {
      const settings = parseHostSettings(readFileSync(configFd, "utf8"), `${configDir}/config.json`);
      sourceConfig = settings.source;
      rateLimit = settings.userRateLimit;
      closeSync(configFd);
    }
    // Only the token's backends have a quota to protect; root may read the token anyway.
    const stateDir = process.env[env.stateDir];
    if (planned.length > 0 && sourceConfig.type !== "file" && rateLimit && caller.uid !== 0 && stateDir) {
      await countFetch(stateDir, caller.uid, rateLimit, log);
    }
    const tokenPath = `${configDir}/token`;
    const token = tokenFd === undefined ? undefined : tokenFromText(readFileSync(tokenFd, "utf8"), tokenPath);
    if (tokenFd !== undefined) closeSync(tokenFd);
    log.debug(`fetcher: started resolving at ${Date.now()}`);
    const values = await resolvePlanned(planned, sourceConfig, token, {
      deadlineSeconds: options.deadlineSeconds,
      log,
      signal: options.signal,
      tokenPath,
    });
    log.debug(`fetcher: finished resolving at ${Date.now()}`);
    return [...values.map((v): Frame => ({ type: "put", path: v.path, value: v.value })), { type: "done" }];
  } finally {
    // Releases the --serialize lock (it lives on this descriptor) before the hand-over.
    closeSync(mapFd);
  }
}

function writeAll(fd: number, buffer: Buffer): Promise<void> {
  return new Promise((resolve, reject) => {
    const step = (offset: number) => {
      if (offset >= buffer.length) return resolve();
      write(fd, buffer, offset, buffer.length - offset, null, (error, written) => {
        if (error) return reject(tempFailError(`cannot hand values to the writer: ${error.code ?? error.message}`));
        step(offset + written);
      });
    };
    step(0);
  });
}
