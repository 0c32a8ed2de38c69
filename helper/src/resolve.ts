import { dataError, ExitCode, HomelabError, tempFailError } from "./errors.js";
import type { Logger } from "./log.js";
import { uniqueReferences, type SecretReference } from "./reference.js";
import { createDeadline, raceSignal } from "./retry.js";
import type { Lock } from "./lock.js";
import type { SourceConfig } from "./spec.js";
import { createSource } from "./sources/index.js";
import type { Source } from "./sources/source.js";

export interface ResolveOptions {
  readonly deadlineSeconds: number;
  readonly log: Logger;
  /** Aborts early (SIGTERM). */
  readonly signal?: AbortSignal;
}

/**
 * Resolve a batch once, bounded by the deadline: every reference gets a value or the
 * whole call fails. Sources retry their own transient failures inside this bound.
 */
export async function resolveReferences(
  source: Source,
  refs: readonly SecretReference[],
  options: ResolveOptions,
): Promise<Map<string, string>> {
  const unique = uniqueReferences(refs);
  const { log } = options;
  const deadline = createDeadline(options.deadlineSeconds, options.signal);
  const started = Date.now();
  log.debug(`resolving ${unique.length} reference(s) from ${source.name}: ${unique.map((r) => r.raw).join(", ")}`);
  try {
    const values = await raceSignal(source.resolveAll(unique, { signal: deadline.signal, log }), deadline.signal).catch(
      (error: unknown) => {
        throw nameReferences(error, unique);
      },
    );
    const missing = unique.filter((ref) => !values.has(ref.raw));
    if (missing.length > 0) throw tempFailError(`${source.name} returned no value for ${missing.map((r) => r.raw).join(", ")}`);
    // A backend answer is data, not a promise of types (Connect's JSON could hold a number or
    // a list): anything but a string would crash the renderers (70) or be coerced into text.
    const notText = unique.filter((ref) => typeof values.get(ref.raw) !== "string");
    if (notText.length > 0)
      throw dataError(`${source.name} returned something other than text for ${notText.map((r) => r.raw).join(", ")}`);
    log.debug(`resolved ${unique.length} reference(s) in ${Date.now() - started} ms`);
    return values;
  } finally {
    deadline.dispose();
  }
}

/** How resolveFromSource gets its backend and whether it waits for the host-wide lock. */
export interface SourceResolveOptions extends ResolveOptions {
  /** A token read already (user mode); without it the source loads its own. */
  readonly token?: string;
  /** --serialize: hold this lock (default the host-wide one) while talking to the backend. */
  readonly lock?: { readonly path?: string };
}

/**
 * Build the source and resolve `refs` in one batch, holding the --serialize lock while the
 * backend is busy (fetch and direct user runs share this; the wrapper locks on its own).
 */
export async function resolveFromSource(
  config: SourceConfig,
  refs: readonly SecretReference[],
  options: SourceResolveOptions,
): Promise<Map<string, string>> {
  const { log, signal } = options;
  let lock: Lock | undefined;
  if (options.lock) {
    // Loaded only with --serialize: node:crypto is not free at boot.
    const { acquireLock, defaultLockPath } = await import("./lock.js");
    lock = await acquireLock(options.lock.path ?? defaultLockPath, { log, ...(signal ? { signal } : {}) });
  }
  try {
    const source = await createSource(config, { log, ...(options.token !== undefined ? { token: options.token } : {}) });
    return await resolveReferences(source, refs, { deadlineSeconds: options.deadlineSeconds, log, ...(signal ? { signal } : {}) });
  } finally {
    await lock?.release();
  }
}

/**
 * Backend-wide failures (unreachable, rejected token, deadline) do not say which references
 * were affected; add them so a journal line tells the operator what the service is missing.
 * Not-found and bad-reference errors name their references already.
 */
function nameReferences(error: unknown, refs: readonly SecretReference[]): unknown {
  if (!(error instanceof HomelabError) || error.exitCode === ExitCode.notFound || error.exitCode === ExitCode.dataErr) return error;
  const shown =
    refs
      .slice(0, 5)
      .map((r) => r.raw)
      .join(", ") + (refs.length > 5 ? ` and ${refs.length - 5} more` : "");
  return new HomelabError(error.exitCode, `could not resolve ${shown}: ${error.message}`, {
    cause: error,
    unrecognised: error.unrecognised,
    ...(error.retryAfterMs !== undefined ? { retryAfterMs: error.retryAfterMs } : {}),
  });
}
