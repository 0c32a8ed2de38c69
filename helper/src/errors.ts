/**
 * sysexits-style exit codes shared by every command (the README's table lists them).
 * 65, 69, 77 and 78 are permanent (the units' RestartPreventExitStatus); 75 is worth a retry.
 */
export const ExitCode = {
  ok: 0,
  usage: 64,
  dataErr: 65,
  notFound: 69,
  cantCreate: 73,
  tempFail: 75,
  noPerm: 77,
  config: 78,
  /** An internal error (a bug): anything thrown that is not a HomelabError. */
  software: 70,
  /** The privilege wrapper only: an OS call that cannot fail did (dup2, fcntl). */
  osErr: 71,
} as const;

export type ExitCodeValue = (typeof ExitCode)[keyof typeof ExitCode];

/**
 * The one error type the CLI maps to an exit code. Messages may name references,
 * files and variables, never secret values or tokens.
 */
export class HomelabError extends Error {
  override readonly name = "HomelabError";
  readonly exitCode: ExitCodeValue;
  /** For transient failures: how long the backend asked us to wait (Retry-After). */
  readonly retryAfterMs: number | undefined;
  /**
   * A backend failure nothing recognised, taken as transient so that it is retried. It could
   * as well be a revoked account, so cached values never stand in for it.
   */
  readonly unrecognised: boolean;

  constructor(exitCode: ExitCodeValue, message: string, options: HomelabErrorOptions = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.exitCode = exitCode;
    this.retryAfterMs = options.retryAfterMs;
    this.unrecognised = options.unrecognised ?? false;
  }
}

export interface HomelabErrorOptions {
  readonly retryAfterMs?: number;
  readonly cause?: unknown;
  readonly unrecognised?: boolean;
}

export const usageError = (m: string) => new HomelabError(ExitCode.usage, m);
export const dataError = (m: string) => new HomelabError(ExitCode.dataErr, m);
export const notFoundError = (m: string) => new HomelabError(ExitCode.notFound, m);
export const cantCreateError = (m: string, cause?: unknown) => new HomelabError(ExitCode.cantCreate, m, { cause });
export const tempFailError = (m: string, options: HomelabErrorOptions = {}) => new HomelabError(ExitCode.tempFail, m, options);
export const permissionError = (m: string) => new HomelabError(ExitCode.noPerm, m);
export const configError = (m: string) => new HomelabError(ExitCode.config, m);

/**
 * Whether sealed last-known-good values may stand in for this failure: a recognised transient
 * one (75: unreachable, timed out, rate-limited), never bad data, not-found, auth or configuration.
 */
export const cacheMayStandIn = (error: unknown): error is HomelabError =>
  error instanceof HomelabError && error.exitCode === ExitCode.tempFail && !error.unrecognised;

/** Why cacheMayStandIn refused an error, for a log line. */
export const whyNot = (error: HomelabError): string =>
  error.unrecognised ? `exit ${error.exitCode}, but an error nothing recognised` : `exit ${error.exitCode}`;

/** Transient failures are the only ones worth retrying. */
export const isTransient = (error: unknown): boolean => error instanceof HomelabError && error.exitCode === ExitCode.tempFail;

/** Whether `error` is one of ours (a message fit for the user) rather than a bug. */
export function isHomelabError(error: unknown): error is HomelabError {
  return error instanceof HomelabError;
}

/** Map anything thrown to an exit code; unknown errors are internal bugs (70 = EX_SOFTWARE). */
export function exitCodeOf(error: unknown): number {
  return isHomelabError(error) ? error.exitCode : ExitCode.software;
}

/** How a run that failed with `error` ends: its exit code and the one line to log. */
export interface Failure {
  readonly exitCode: number;
  /** The HomelabError's message, or "internal error: " and the stack. */
  readonly line: string;
  readonly internal: boolean;
}

/** The one mapping from anything thrown to what the user sees (the CLI's exit path and the wrapper's error frame). */
export function failureOf(error: unknown): Failure {
  if (isHomelabError(error)) return { exitCode: error.exitCode, line: error.message, internal: false };
  return {
    exitCode: ExitCode.software,
    line: `internal error: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}`,
    internal: true,
  };
}
