/**
 * The last-known-good cache as `fetch --cache` uses it: reuse within the restart window,
 * stand in for a temporary (75) failure, remember every fresh success. Loaded only with
 * --cache, so a boot without it pays nothing for this.
 */
import { cacheMayStandIn, HomelabError, whyNot } from "../errors.js";
import type { Logger } from "../log.js";
import type { SecretReference } from "../reference.js";
import type { SourceConfig } from "../spec.js";
import { humanAge, judgeAge, withinReuse } from "./age.js";
import type { CredsOptions } from "./creds.js";
import { cacheKey, uncacheableReferences } from "./key.js";
import { removeMarker, writeMarker } from "./marker.js";
import {
  cacheMtime,
  cachePath,
  privateDirectoryProblem,
  readCache,
  removeCache,
  removeStaleTemps,
  writeCache,
  type CacheLocation,
  type ReadOutcome,
} from "./store.js";

/** `fetch --cache`'s settings. */
export interface CacheSettings {
  readonly dir: string;
  readonly markerDir: string;
  /** Refuse cached values older than this. */
  readonly maxAgeSeconds: number;
  /** Within this many seconds of the last fresh resolve, use the cache without asking the backend (0: never). */
  readonly reuseSeconds: number;
  readonly creds?: CredsOptions;
  /** The clock (ms since the epoch); tests inject one. */
  readonly now?: () => number;
}

/** Values and where they came from. */
export interface CachedValues {
  readonly values: Map<string, string>;
  readonly ageMs: number;
}

/** One fetch's view of its spec's cache. */
export interface FetchCache {
  /** Cached values if the last fresh resolve is within the reuse window, else undefined (ask the backend). */
  reuse(): Promise<CachedValues | undefined>;
  /** After a failed resolve: cached values to use instead, or `error` rethrown (with a line saying why not). */
  fallback(error: unknown, signal?: AbortSignal): Promise<CachedValues>;
  /** The outputs were written from the fallback's values: record the marker (a failure only warns). */
  markCached(storedAtAgeMs: number, reason: string): Promise<void>;
  /** After a fresh success whose outputs are written: seal the values, drop the marker (a failure only warns). */
  remember(values: ReadonlyMap<string, string>): Promise<void>;
}

/** The cache of the spec `specName` that fetches `refs` from `source`. */
export function openFetchCache(
  settings: CacheSettings,
  spec: { readonly name: string; readonly source: SourceConfig; readonly refs: readonly SecretReference[] },
  log: Logger,
): FetchCache {
  const now = settings.now ?? Date.now;
  const location: CacheLocation = {
    dir: settings.dir,
    specName: spec.name,
    specKey: cacheKey(spec.source, spec.refs),
    ...(settings.creds ? { creds: settings.creds } : {}),
  };
  const otp = uncacheableReferences(spec.refs);
  const otpWhy = otp.length > 0 ? `its one-time-password reference(s) ${otp.map((r) => r.raw).join(", ")} would be expired` : undefined;

  /** The entry's values for exactly this spec's references, or why not. */
  const valuesOf = (entry: { values: Readonly<Record<string, string>> }): Map<string, string> | string => {
    const values = new Map<string, string>();
    for (const ref of spec.refs) {
      const value = entry.values[ref.raw];
      if (value === undefined) return `it has no value for ${ref.raw}`;
      values.set(ref.raw, value);
    }
    return values;
  };

  // Read (decrypted) at most once per fetch: a start inside the reuse window whose backend
  // then fails would otherwise run systemd-creds twice, and a hung TPM would cost two timeouts.
  let read: Promise<ReadOutcome> | undefined;
  const readOnce = () => (read ??= readCache(location));

  return {
    async reuse() {
      if (settings.reuseSeconds <= 0 || otpWhy) return undefined;
      // Written after its storedAt: a file older than the window needs no decryption (the usual boot).
      const mtime = await cacheMtime(settings.dir, spec.name);
      if (mtime === undefined || now() - mtime >= settings.reuseSeconds * 1000) return undefined;
      const read = await readOnce();
      if (read.kind !== "ok") return undefined;
      const t = now();
      if (!withinReuse(read.entry.storedAt, t, settings.reuseSeconds)) return undefined;
      const values = valuesOf(read.entry);
      if (typeof values === "string") return undefined;
      const ageMs = t - read.entry.storedAt;
      log.info(
        `${spec.name}: using cached values from ${humanAge(ageMs)} ago without asking the backend (fetched fresh within the last ${settings.reuseSeconds} s: --cache-reuse)`,
      );
      return { values, ageMs };
    },

    async fallback(error, signal) {
      if (!cacheMayStandIn(error)) {
        if (error instanceof HomelabError)
          log.info(
            `${spec.name}: cached values are used only for recognised temporary failures (exit 75), not for this one (${whyNot(error)})`,
          );
        throw error;
      }
      if (signal?.aborted) throw error; // stopped (SIGTERM), not failed: nothing to stand in for
      function refuse(why: string): never {
        log.warn(`${spec.name}: cached values not used: ${why}`);
        throw error;
      }
      if (otpWhy) refuse(otpWhy);
      const read = await readOnce();
      if (read.kind === "absent") refuse(`none stored in ${settings.dir} yet`);
      if (read.kind === "unusable") refuse(read.why);
      const verdict = judgeAge(read.entry.storedAt, now(), settings.maxAgeSeconds);
      if (!verdict.usable) {
        if (verdict.remove) {
          await removeCache(settings.dir, spec.name).catch(() => {});
          refuse(`${verdict.why}; removed ${read.path}`);
        }
        refuse(verdict.why);
      }
      const values = valuesOf(read.entry);
      if (typeof values === "string") refuse(values);
      log.warn(`${spec.name}: using cached values from ${humanAge(verdict.ageMs)} ago (the backend failed: ${error.message})`);
      return { values, ageMs: verdict.ageMs };
    },

    async markCached(ageMs, reason) {
      const t = now();
      try {
        await writeMarker(settings.markerDir, spec.name, { since: t, storedAt: t - ageMs, reason });
      } catch (e) {
        log.warn(`${spec.name}: could not record that it runs on cached values in ${settings.markerDir}: ${(e as Error).message}`);
      }
    },

    async remember(values) {
      try {
        await removeMarker(settings.markerDir, spec.name);
      } catch (e) {
        log.warn(`${spec.name}: could not remove the cached-values marker in ${settings.markerDir}: ${(e as Error).message}`);
      }
      if (otpWhy) {
        log.warn(`${spec.name}: not cached: ${otpWhy}`);
        return;
      }
      try {
        await removeStaleTemps(settings.dir, spec.name);
        const path = await writeCache(location, values, now());
        log.debug(`${spec.name}: sealed ${values.size} value(s) in ${path}`);
      } catch (e) {
        // The entry there now holds values older than these, perhaps rotated out: a later
        // failure must not bring them back.
        const dropped = await dropSuperseded(settings.dir, spec.name);
        log.warn(`${spec.name}: fetched fresh, but could not update the cache: ${(e as Error).message}${dropped}`);
      }
    },
  };
}

/** Remove the spec's older entry after a failed store (only in a private directory: never by a path someone else controls); what to add to the warning. */
async function dropSuperseded(dir: string, specName: string): Promise<string> {
  if ((await cacheMtime(dir, specName)) === undefined) return "";
  if ((await privateDirectoryProblem(dir, false)) !== undefined) return "";
  try {
    await removeCache(dir, specName);
    return `; removed the older ${cachePath(dir, specName)} so that a failure cannot bring back the values these replaced`;
  } catch (e) {
    return `; could not remove the older ${cachePath(dir, specName)} either (${(e as NodeJS.ErrnoException).code ?? String(e)}): a failure may bring back the values these replaced`;
  }
}
