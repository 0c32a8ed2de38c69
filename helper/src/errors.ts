/** sysexits-style exit codes shared by every command (see DESIGN.md "Exit codes"). */
export const ExitCode = {
  ok: 0,
  usage: 64,
  dataErr: 65,
  notFound: 69,
  cantCreate: 73,
  tempFail: 75,
  noPerm: 77,
  config: 78,
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

  constructor(exitCode: ExitCodeValue, message: string, options: { retryAfterMs?: number; cause?: unknown } = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.exitCode = exitCode;
    this.retryAfterMs = options.retryAfterMs;
  }
}

export const usageError = (m: string) => new HomelabError(ExitCode.usage, m);
export const dataError = (m: string) => new HomelabError(ExitCode.dataErr, m);
export const notFoundError = (m: string) => new HomelabError(ExitCode.notFound, m);
export const cantCreateError = (m: string, cause?: unknown) => new HomelabError(ExitCode.cantCreate, m, { cause });
export const tempFailError = (m: string, options: { retryAfterMs?: number; cause?: unknown } = {}) =>
  new HomelabError(ExitCode.tempFail, m, options);
export const permissionError = (m: string) => new HomelabError(ExitCode.noPerm, m);
export const configError = (m: string) => new HomelabError(ExitCode.config, m);

/** Transient failures are the only ones worth retrying. */
export const isTransient = (error: unknown): boolean =>
  error instanceof HomelabError && error.exitCode === ExitCode.tempFail;

/** Map anything thrown to an exit code; unknown errors are internal bugs (70 = EX_SOFTWARE). */
export function exitCodeOf(error: unknown): number {
  if (error instanceof HomelabError) return error.exitCode;
  return 70;
}
