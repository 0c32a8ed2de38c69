import type { SecretReference } from "../reference.js";

/**
 * A backend that turns `op://` references into values. Implementations resolve the whole
 * batch or throw a HomelabError: 69 when references do not exist (naming every missing
 * reference), 75 for transient failures (retried by the caller), 77 for auth problems,
 * 78 for missing configuration.
 */
export interface Source {
  readonly name: string;
  /** Returns a value for every reference, keyed by `SecretReference.raw`. */
  resolveAll(refs: readonly SecretReference[], context: ResolveContext): Promise<Map<string, string>>;
}

export interface ResolveContext {
  /** Aborted when the run's deadline passes or the process is told to stop. */
  readonly signal: AbortSignal;
  readonly log: import("../log.js").Logger;
}
