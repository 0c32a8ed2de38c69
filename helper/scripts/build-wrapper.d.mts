// Type declarations for build-wrapper.mjs (plain JavaScript, run with bare `node`); the tests import buildWrapper().

/** helper/wrapper/homelab-secrets-user.c in this checkout. */
export const wrapperSource: string;
/** build/homelab-secrets-user in this checkout. */
export const defaultWrapperPath: string;
export const cflags: string[];

/**
 * Compile the wrapper with node, the CLI and the config directory baked in as absolute paths
 * (throws on a relative path, a path that would need escaping, a bad service user name or a
 * lockTimeoutSeconds below 2, or when the compiler fails).
 * @returns the path of the binary
 */
export function buildWrapper(options?: {
  configDir?: string;
  out?: string;
  node?: string;
  cli?: string;
  serviceUser?: string;
  lockTimeoutSeconds?: number;
  /** The fetcher's hard time limit; below lockTimeoutSeconds: by default 10 s below it, 1 s below one under 20 s. */
  fetcherLimitSeconds?: number;
  /** The service account's state directory (per-user rate limit). */
  stateDir?: string;
  cc?: string;
}): string;
