/**
 * What a cached entry belongs to: the effective source and the set of references a spec
 * fetches. Any change to either gives another key, so values cached for an old spec are
 * never rendered into a new one.
 */
import { createHash } from "node:crypto";
import type { SecretReference } from "../reference.js";
import type { SourceConfig } from "../spec.js";

/**
 * sha256 (hex) of the canonical JSON of where values come from (the source's type and its
 * host or vault path) and the sorted, unique raw references. Not part of it: how the backend
 * is signed in to (token credential or file, Connect's listener account) and how values are
 * rendered (output names, modes, template text) — neither changes which values are fetched.
 */
export function cacheKey(source: SourceConfig, refs: readonly SecretReference[]): string {
  const from = sourceOrigin(source);
  const references = [...new Set(refs.map((r) => r.raw))].sort();
  return createHash("sha256")
    .update(JSON.stringify({ source: from, references }))
    .digest("hex");
}

/**
 * The name systemd-creds embeds in the ciphertext and checks on decryption: a file copied
 * to another spec's name, or left over from an older version of this spec, does not decrypt.
 */
export function credentialName(specName: string, key: string): string {
  return `homelab-secrets.${specName}.${key.slice(0, 16)}`;
}

/** One-time-password references: a cached code would have expired, so such specs are not cached. */
export function uncacheableReferences(refs: readonly SecretReference[]): SecretReference[] {
  return refs.filter((r) => r.attribute !== undefined);
}

/**
 * Where values come from, as sealed caches bind them: the source's type and its Connect host
 * or vault path; not how it is signed in to (token credential or file, listener account).
 */
export function sourceOrigin(source: SourceConfig): { type: string; host?: string; path?: string } {
  if (source.type === "connect") return { type: source.type, host: source.host };
  if (source.type === "file") return { type: source.type, path: source.path };
  return { type: source.type };
}
