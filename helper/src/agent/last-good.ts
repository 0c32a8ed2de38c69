/**
 * The agent's last-known-good cache: every fresh backend batch is merged into the sealed file
 * (one write per batch, writes never overlapping), and a request whose batch failed with a
 * temporary error (75) may be served from it when every reference it needs is there and no
 * older than maxAge.
 */
import { judgeAge } from "../cache/age.js";
import type { Logger } from "../log.js";
import type { SecretReference } from "../reference.js";
import { readSealed, removeSealedTemps, writeSealed, type SealedLocation, type SealedValue } from "./sealed.js";

/** What the agent's cache needs. */
export interface LastGoodOptions extends SealedLocation {
  readonly maxAgeSeconds: number;
  readonly log: Logger;
  readonly now?: () => number;
}

/** Values for a request and the age of the oldest of them, or why there are none. */
export type LastGoodLookup =
  { readonly ok: true; readonly values: Map<string, string>; readonly ageMs: number } | { readonly ok: false; readonly why: string };

/** The sealed last-known-good values of one agent. */
export class LastGood {
  private entries: Promise<Map<string, SealedValue>> | undefined;
  private writing: Promise<void> | undefined;
  private dirty = false;
  private readonly now: () => number;
  /** Sealed files written so far (for tests). */
  writes = 0;

  constructor(private readonly options: LastGoodOptions) {
    this.now = options.now ?? Date.now;
  }

  /** The file's values, read once; one that does not unseal counts as empty (the next write replaces it). */
  private load(): Promise<Map<string, SealedValue>> {
    this.entries ??= (async () => {
      await removeSealedTemps(this.options.dir);
      const read = await readSealed(this.options);
      if (read.kind === "ok") return read.values;
      if (read.kind === "unusable") this.options.log.warn(`agent cache: ignoring the sealed values: ${read.why}`);
      return new Map<string, SealedValue>();
    })();
    return this.entries;
  }

  /**
   * A fresh batch's values (one-time-password references left out: a cached code would have
   * expired); the file is rewritten once for it. Resolves when that write is done; never rejects.
   */
  async remember(refs: readonly SecretReference[], values: ReadonlyMap<string, string>, at: number): Promise<void> {
    const entries = await this.load();
    for (const ref of refs) {
      const value = values.get(ref.raw);
      if (ref.attribute === undefined && value !== undefined) entries.set(ref.raw, { value, at });
    }
    await this.flush();
  }

  /** Write the current entries; a write asked for while one runs is done once after it. */
  private async flush(): Promise<void> {
    if (this.writing) {
      this.dirty = true;
      return this.writing;
    }
    this.writing = (async () => {
      do {
        this.dirty = false;
        const entries = await this.load();
        try {
          this.writes++;
          await writeSealed(this.options, entries);
        } catch (error) {
          this.options.log.warn(`agent cache: fetched fresh, but could not update the sealed values: ${(error as Error).message}`);
        }
      } while (this.dirty);
    })();
    try {
      await this.writing;
    } finally {
      this.writing = undefined;
    }
  }

  /** Cached values for exactly these references, if all are there and young enough; too old ones are dropped. */
  async lookup(refs: readonly SecretReference[]): Promise<LastGoodLookup> {
    const entries = await this.load();
    const now = this.now();
    const values = new Map<string, string>();
    let oldest = 0;
    let dropped = false;
    let why: string | undefined;
    for (const ref of refs) {
      const entry = entries.get(ref.raw);
      if (entry === undefined) {
        why ??= ref.attribute !== undefined ? `${ref.raw} is a one-time password (never cached)` : `none stored for ${ref.raw}`;
        continue;
      }
      const verdict = judgeAge(entry.at, now, this.options.maxAgeSeconds);
      if (!verdict.usable) {
        why ??= `the value of ${ref.raw}: ${verdict.why}`;
        if (verdict.remove) {
          entries.delete(ref.raw);
          dropped = true;
        }
        continue;
      }
      oldest = Math.max(oldest, verdict.ageMs);
      values.set(ref.raw, entry.value);
    }
    if (dropped) void this.flush();
    if (why !== undefined) return { ok: false, why };
    return { ok: true, values, ageMs: oldest };
  }
}
