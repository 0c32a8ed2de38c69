// Type declarations for package-deb.mjs (plain JavaScript, run with bare `node`); the tests import packageDeb().

/** /usr/lib/homelab-secrets: the CLI and its production dependencies. */
export const libDir: string;
/** The CLI the launcher and the wrapper run. */
export const cliPath: string;
/** The node the package runs (Depends: nodejs (>= 20)). */
export const nodePath: string;
/** /etc/homelab-secrets, baked into the wrapper. */
export const configDir: string;

/** package.json's version plus `suffix`; throws when that is not a Debian native version. */
export function debVersion(suffix?: string): string;

/**
 * Build `homelab-secrets_<version>_<arch>.deb` in `outDir` (default build/deb) with
 * `dpkg-deb --root-owner-group`; production dependencies come from the lockfile through
 * `npm ci --omit=dev` (`offline`: from the npm cache only). Throws when a step fails.
 */
export function packageDeb(options?: { versionSuffix?: string; outDir?: string; offline?: boolean }): {
  path: string;
  version: string;
  arch: string;
  bytes: number;
};
