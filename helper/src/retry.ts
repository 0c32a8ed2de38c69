import { HomelabError, isTransient, tempFailError } from "./errors.js";
import type { Logger } from "./log.js";

export interface RetryOptions {
  readonly signal: AbortSignal;
  readonly log: Logger;
  /** Retries after the first attempt. */
  readonly retries?: number;
  readonly minTimeoutMs?: number;
  readonly maxTimeoutMs?: number;
}

export const defaultRetry = { retries: 4, minTimeoutMs: 500, maxTimeoutMs: 8000 } as const;

/**
 * Run `operation` again on transient failures (exit class 75) with exponential backoff,
 * honouring a backend's Retry-After. Permanent failures and the deadline end it at once.
 */
export async function withRetry<T>(what: string, operation: (attempt: number) => Promise<T>, options: RetryOptions): Promise<T> {
  const { signal, log } = options;
  let lastFailure: HomelabError | undefined;
  // Loaded on first use: the file source never retries, and boot-time startup counts.
  const { default: pRetry } = await import("p-retry");
  try {
    return await pRetry(
      async (attempt) => {
        throwIfAborted(signal);
        return await operation(attempt);
      },
      {
        retries: options.retries ?? defaultRetry.retries,
        minTimeout: options.minTimeoutMs ?? defaultRetry.minTimeoutMs,
        maxTimeout: options.maxTimeoutMs ?? defaultRetry.maxTimeoutMs,
        randomize: true,
        signal,
        shouldRetry: ({ error }) => isTransient(error) && !signal.aborted,
        onFailedAttempt: async ({ error, attemptNumber, retriesLeft }) => {
          if (error instanceof HomelabError && isTransient(error)) lastFailure = error;
          if (!isTransient(error) || retriesLeft === 0 || signal.aborted) return;
          const wait = error instanceof HomelabError ? error.retryAfterMs : undefined;
          log.warn(`${what}: attempt ${attemptNumber} failed (${error.message}); retrying`);
          if (wait !== undefined && wait > 0) {
            log.info(`${what}: backend asked to wait ${Math.ceil(wait / 1000)}s before retrying`);
            await sleep(wait, signal);
          }
        },
      },
    );
  } catch (error) {
    if (signal.aborted && !(error instanceof HomelabError && !isTransient(error))) {
      const reason = abortReason(signal);
      // "deadline passed" alone does not tell an operator why; keep the last real failure.
      if (lastFailure && lastFailure !== reason) {
        throw new HomelabError(reason.exitCode, `${reason.message}; last failure: ${lastFailure.message}`, { cause: lastFailure });
      }
      throw reason;
    }
    throw error;
  }
}

export function throwIfAborted(signal: AbortSignal): void {
  if (signal.aborted) throw abortReason(signal);
}

function abortReason(signal: AbortSignal): HomelabError {
  const reason: unknown = signal.reason;
  return reason instanceof HomelabError ? reason : tempFailError("operation aborted");
}

export function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) return reject(abortReason(signal));
    const timer = setTimeout(() => {
      signal?.removeEventListener("abort", onAbort);
      resolve();
    }, ms);
    const onAbort = () => {
      clearTimeout(timer);
      reject(abortReason(signal!));
    };
    signal?.addEventListener("abort", onAbort, { once: true });
  });
}

export interface Deadline {
  readonly signal: AbortSignal;
  readonly seconds: number;
  /** Stop the timer once the work is done so it does not hold the process open. */
  dispose(): void;
}

/**
 * A whole-run deadline: when it passes the signal aborts with a 75-class error, so a
 * oneshot unit fails with a clear message instead of hanging boot.
 */
export function createDeadline(seconds: number, parent?: AbortSignal): Deadline {
  const controller = new AbortController();
  const timer = setTimeout(
    () => controller.abort(tempFailError(`deadline of ${seconds}s passed before all references resolved`)),
    Math.max(0, seconds * 1000),
  );
  timer.unref();
  const onParent = () => controller.abort(parent!.reason);
  parent?.addEventListener("abort", onParent, { once: true });
  return {
    signal: controller.signal,
    seconds,
    dispose() {
      clearTimeout(timer);
      parent?.removeEventListener("abort", onParent);
    },
  };
}

/** Settle with `promise`, or reject with the signal's reason as soon as it aborts. */
export function raceSignal<T>(promise: Promise<T>, signal: AbortSignal): Promise<T> {
  if (signal.aborted) return Promise.reject(abortReason(signal));
  return new Promise<T>((resolve, reject) => {
    const onAbort = () => reject(abortReason(signal));
    signal.addEventListener("abort", onAbort, { once: true });
    promise.then(
      (value) => {
        signal.removeEventListener("abort", onAbort);
        resolve(value);
      },
      (error: unknown) => {
        signal.removeEventListener("abort", onAbort);
        // eslint-disable-next-line @typescript-eslint/prefer-promise-reject-errors -- passes the promise's own rejection through unchanged
        reject(error);
      },
    );
  });
}
