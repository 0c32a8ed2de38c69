import { ExitCode, failureOf, HomelabError } from "../errors.js";
import { createLogger, type Logger } from "../log.js";

/** How a command's logger and stop message look. */
export interface RunOptions {
  readonly verbose: boolean;
  readonly prefix?: string;
  /** Said after "stopped by SIGTERM" in the resulting error. */
  readonly stopMessage?: string;
}

/**
 * The one place a command ends: the exit code it returns, or the one its error maps to.
 * It exits at once rather than waiting for the event loop: a backend call abandoned at the
 * deadline (the SDK's own ~10 s connect timeout, a hanging socket) or a pipe still open must
 * not keep a oneshot unit or a waiting caller alive.
 */
export async function runAndExit(options: RunOptions, run: (log: Logger, signal: AbortSignal) => Promise<number>): Promise<never> {
  const log = createLogger({ verbose: options.verbose, ...(options.prefix ? { prefix: options.prefix } : {}) });
  const controller = new AbortController();
  const stop = (name: string) => {
    log.warn(`received ${name}, stopping`);
    controller.abort(new HomelabError(ExitCode.tempFail, `stopped by ${name}${options.stopMessage ? `; ${options.stopMessage}` : ""}`));
  };
  process.once("SIGTERM", () => stop("SIGTERM"));
  process.once("SIGINT", () => stop("SIGINT"));
  let code: number;
  try {
    code = await run(log, controller.signal);
  } catch (error) {
    const failure = failureOf(error);
    log.error(failure.line);
    code = failure.exitCode;
  }
  await Promise.all([drain(process.stdout), drain(process.stderr)]);
  process.exit(code);
}

/**
 * Wait for what we wrote to be taken, but not forever: a reader that stops reading (the
 * wrapper's writer, stopped by its caller) must not keep the fetcher alive.
 */
function drain(stream: NodeJS.WriteStream, timeoutMs = 5000): Promise<void> {
  return new Promise((resolve) => {
    setTimeout(resolve, timeoutMs).unref();
    stream.write("", () => resolve());
  });
}
