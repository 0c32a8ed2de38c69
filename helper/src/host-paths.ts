/** Where a host keeps the per-user setup; no imports, so the boot-time CLI can load it for free. */

/** The host configuration directory: mapfile, token, config.json. */
export const defaultConfigDir = "/etc/homelab-secrets";

/** Where NixOS's security.wrappers puts the SUID wrapper. */
export const nixosWrapperPath = "/run/wrappers/bin/homelab-secrets-user";

/** Where the Debian package installs the SUID wrapper. */
export const packageWrapperPath = "/usr/bin/homelab-secrets-user";

/** Where `fetch --cache` keeps each spec's sealed last-known-good values (the secrets units' StateDirectory=). */
export const defaultCacheDir = "/var/lib/homelab-secrets";

/** Where `fetch --cache` records which specs are running on cached values right now (no values in it). */
export const defaultCacheMarkerDir = "/run/homelab-secrets/cached";
