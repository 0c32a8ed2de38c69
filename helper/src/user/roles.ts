/**
 * The two halves run by the privilege wrapper (see protocol.ts):
 * - the fetcher (service account): reads the mapfile/token/config from inherited fds,
 *   resolves only the caller's entries and hands the values over the pipe;
 * - the writer (the caller): reads the pipe and writes, all or nothing.
 */
import { closeSync, readFileSync, write } from "node:fs";
import { Socket } from "node:net";
import { ExitCode, HomelabError, failureOf, permissionError, tempFailError, usageError } from "../errors.js";
import type { Logger } from "../log.js";
import type { SourceConfig } from "../spec.js";
import { planEntries, removeUserFiles, resolvePlanned, tagFilter, tokenText, writeUserFiles, type Caller } from "./core.js";
import { parseHostSettings } from "./host-config.js";
import { countFetch, defaultRateLimit, type RateLimit } from "./rate-limit.js";
import { encodeFrame, env, FrameDecoder, type Frame } from "./protocol.js";

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

export interface WrapperContext {
  readonly role: "fetcher" | "writer";
  readonly caller: Caller & { readonly gid: number };
  readonly mapfilePath: string;
}

/** The wrapper's environment, checked; undefined when not run by the wrapper. */
export function wrapperContext(environment: NodeJS.ProcessEnv = process.env): WrapperContext | undefined {
  if (environment[env.wrapper] === undefined) return undefined;
  if (environment[env.wrapper] !== "1") throw usageError(`unsupported wrapper protocol ${environment[env.wrapper]}`);
  const role = environment[env.role];
  if (role !== "fetcher" && role !== "writer") throw usageError(`bad ${env.role}`);
  const uid = Number(environment[env.callerUid]);
  const gid = Number(environment[env.callerGid]);
  const user = environment[env.callerUser] ?? "";
  if (!Number.isInteger(uid) || uid < 0 || !Number.isInteger(gid) || gid < 0 || user === "") throw usageError("bad caller in the wrapper environment");
  return { role, caller: { user, uid, gid }, mapfilePath: environment[env.mapfilePath] ?? "mapfile" };
}

function fdFromEnv(name: string): number | undefined {
  const text = process.env[name];
  if (text === undefined) return undefined;
  const fd = Number(text);
  if (!Number.isInteger(fd) || fd < 3) throw usageError(`bad ${name}`);
  return fd;
}

// ---------------------------------------------------------------- fetcher

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
    const token = tokenFd === undefined ? undefined : tokenText(readFileSync(tokenFd, "utf8"), tokenPath);
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

// ---------------------------------------------------------------- writer

export async function runWriter(context: WrapperContext, options: Pick<RoleOptions, "cleanup" | "log" | "signal">): Promise<void> {
  const { log } = options;
  const uid = process.getuid!();
  if (uid !== context.caller.uid) throw permissionError(`writer runs as uid ${uid}, not the caller's uid ${context.caller.uid}`);
  const inFd = fdFromEnv(env.inFd);
  if (inFd === undefined) throw usageError(`${env.inFd} is not set`);

  const fetcherLog = relayLog(fdFromEnv(env.logFd));
  let frames: Frame[];
  try {
    frames = await readFrames(inFd, options.signal);
    await fetcherLog.ended(2000); // its last words (e.g. why it gave up) come before ours
  } finally {
    fetcherLog.stop();
  }
  const end = frames.at(-1);
  if (end?.type === "error") throw new HomelabError(asExitCode(end.exitCode), end.message);
  if (end?.type !== "done") throw tempFailError("the fetcher ended without handing over its results (it crashed, or the wrapper stopped it at its time limit); nothing written");

  const puts = frames.filter((f) => f.type === "put");
  const cleanups = frames.filter((f) => f.type === "cleanup");
  if (options.cleanup) {
    if (puts.length > 0) throw permissionError("the fetcher sent values during --cleanup; nothing removed");
    const removed = await removeUserFiles(cleanups.map((f) => f.path), uid, log);
    log.info(`${context.caller.user}: removed ${removed} of ${cleanups.length} file(s)`);
    return;
  }
  if (cleanups.length > 0) throw permissionError("the fetcher sent removals without --cleanup; nothing written");
  await writeUserFiles(puts, uid, log);
  log.info(`${context.caller.user}: wrote ${puts.length} file(s)`);
}

/** Copy the fetcher's log pipe to our stderr as it comes. */
function relayLog(fd: number | undefined): { ended(timeoutMs: number): Promise<void>; stop(): void } {
  if (fd === undefined) return { ended: () => Promise.resolve(), stop: () => undefined };
  const stream = new Socket({ fd, readable: true, writable: false });
  stream.on("data", (chunk: Buffer) => process.stderr.write(chunk));
  stream.on("error", () => undefined);
  const closed = new Promise<void>((resolve) => stream.once("close", () => resolve()));
  return {
    ended: (timeoutMs) => {
      let timer: NodeJS.Timeout | undefined;
      const timeout = new Promise<void>((resolve) => (timer = setTimeout(resolve, timeoutMs)));
      return Promise.race([closed, timeout]).finally(() => clearTimeout(timer));
    },
    stop: () => stream.destroy(),
  };
}

async function readFrames(fd: number, signal: AbortSignal): Promise<Frame[]> {
  const decoder = new FrameDecoder();
  const frames: Frame[] = [];
  // A net.Socket reads the pipe without blocking a thread, so stopping the writer (SIGTERM)
  // ends the run at once; the fetcher notices we are gone and stops too.
  const stream = new Socket({ fd, readable: true, writable: false });
  const onAbort = () => stream.destroy();
  signal.addEventListener("abort", onAbort, { once: true });
  if (signal.aborted) onAbort(); // stopped while starting up: the listener never fires
  try {
    for await (const chunk of stream as AsyncIterable<Buffer>) {
      for (const frame of decoder.push(chunk)) {
        if (frames.at(-1)?.type === "done" || frames.at(-1)?.type === "error") throw permissionError("wrapper protocol: data after the last frame");
        frames.push(frame);
      }
    }
  } catch (error) {
    if (signal.aborted) throw signal.reason instanceof HomelabError ? signal.reason : tempFailError("stopped; nothing written");
    throw error;
  } finally {
    signal.removeEventListener("abort", onAbort);
    stream.destroy();
  }
  if (signal.aborted) throw signal.reason instanceof HomelabError ? signal.reason : tempFailError("stopped; nothing written");
  if (decoder.pending > 0) throw tempFailError("the fetcher's hand-over was cut short; nothing written");
  return frames;
}

// The codes an error frame may carry to the caller: a fetcher's internal error (70) reaches
// the caller as 75, like any code outside this set.
const knownCodes = new Set<number>(Object.values(ExitCode).filter((c) => c !== ExitCode.software && c !== ExitCode.osErr));
function asExitCode(code: number): (typeof ExitCode)[keyof typeof ExitCode] {
  return (knownCodes.has(code) && code !== 0 ? code : ExitCode.tempFail) as (typeof ExitCode)[keyof typeof ExitCode];
}
