/**
 * The wrapper's writer half (it runs as the caller): reads the fetcher's frames and writes
 * the caller's files, all or nothing; the fetcher's log is relayed to our stderr.
 */
import { Socket } from "node:net";
import { ExitCode, HomelabError, permissionError, tempFailError, usageError } from "../errors.js";
import { removeUserFiles, writeUserFiles } from "./files.js";
import type { RoleOptions } from "./fetcher.js";
import { env, fdFromEnv, FrameDecoder, type Frame, type WrapperContext } from "./protocol.js";

/** Run the writer: every file the fetcher handed over is written, or none. */
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
  if (end?.type !== "done")
    throw tempFailError(
      "the fetcher ended without handing over its results (it crashed, or the wrapper stopped it at its time limit); nothing written",
    );

  const puts = frames.filter((f) => f.type === "put");
  const cleanups = frames.filter((f) => f.type === "cleanup");
  if (options.cleanup) {
    if (puts.length > 0) throw permissionError("the fetcher sent values during --cleanup; nothing removed");
    const removed = await removeUserFiles(
      cleanups.map((f) => f.path),
      uid,
      log,
    );
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
        if (frames.at(-1)?.type === "done" || frames.at(-1)?.type === "error")
          throw permissionError("wrapper protocol: data after the last frame");
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
