import { cacheMayStandIn, ExitCode, HomelabError, whyNot } from "../errors.js";
import type { Logger } from "../log.js";
import { uniqueReferences, type SecretReference } from "../reference.js";
import { resolveReferences } from "../resolve.js";
import type { Source } from "../sources/source.js";
import { humanAge } from "../cache/age.js";
import type { LastGood } from "./last-good.js";

/** Not-found and bad-data errors are about particular references, not the backend. */
const isSpecific = (error: unknown): boolean =>
  error instanceof HomelabError && (error.exitCode === ExitCode.notFound || error.exitCode === ExitCode.dataErr);

export interface BatcherOptions {
  /** Builds the backend client; called again after a transient failure. */
  readonly createSource: () => Promise<Source>;
  /** Fetched along with the first request, so the units starting together cost one batch. */
  readonly prefetch: readonly SecretReference[];
  /** How long a value is served from memory; 0: every request goes to the backend. */
  readonly ttlSeconds: number;
  /**
   * How long a request whose references the backend does not have (69) is refused from
   * memory; default min(ttlSeconds, 30), 0: ask every time. 1Password counts failed reads
   * against its rate limits too, and a unit with a wrong reference may be restarted in a loop.
   */
  readonly notFoundSeconds?: number;
  readonly deadlineSeconds: number;
  readonly log: Logger;
  /** Requests arriving within this window share one backend batch (default 20 ms). */
  readonly mergeWindowMs?: number;
  readonly now?: () => number;
  /**
   * The sealed last-known-good values: updated after every fresh batch, and standing in for a
   * batch that failed with a temporary error (75), never for any other.
   */
  readonly lastGood?: LastGood;
  /**
   * With lastGood: for this long after a batch failed with 75, requests are answered from the
   * sealed values (or fail) without asking the backend again (default 30 s). A unit loads its
   * credentials once per command (guard, then ExecStart=): without this each load would wait
   * the whole deadline, and two deadlines can exceed the unit's start timeout.
   */
  readonly outageSeconds?: number;
}

interface Waiter {
  readonly refs: readonly SecretReference[];
  /** Who asks, for log lines ("foo.service: credential db"). */
  readonly who: string;
  resolve(values: ReadonlyMap<string, string>): void;
  reject(error: unknown): void;
}

interface Batch {
  readonly raws: Set<string>;
  readonly waiters: Waiter[];
  /** Set once the batch has been sent to the backend. */
  sent: boolean;
}

/**
 * Resolves references for the agent: one backend batch for concurrent requests (and, with a
 * TTL, for everything the policy names), then answers from memory until the TTL passes.
 * Deadline, retries and exit classes are resolveReferences' and the source's own.
 */
export class Batcher {
  private readonly cache = new Map<string, { value: string; at: number }>();
  /** Requests (their references, sorted) the backend answered with not-found, and when. */
  private readonly notFound = new Map<string, { error: HomelabError; at: number }>();
  private readonly notFoundMs: number;
  /** The last temporary failure while there are sealed values to fall back on. */
  private outage: { error: HomelabError; at: number } | undefined;
  private readonly inFlight = new Set<Batch>();
  private gathering: Batch | undefined;
  private source: Promise<Source> | undefined;
  private readonly now: () => number;
  /** Backend batches sent so far (for logs and tests). */
  batches = 0;
  /** The last store into the sealed values (tests await it); never rejects. */
  storing: Promise<void> = Promise.resolve();

  constructor(private readonly options: BatcherOptions) {
    this.now = options.now ?? Date.now;
    this.notFoundMs = (options.notFoundSeconds ?? Math.min(options.ttlSeconds, 30)) * 1000;
  }

  /** Values for every reference, or the batch's error. */
  resolve(refs: readonly SecretReference[], who = `${refs.length} reference(s)`): Promise<ReadonlyMap<string, string>> {
    const cached = this.fromCache(refs);
    if (cached) return Promise.resolve(cached);
    const outage = this.recentOutage();
    if (outage) {
      this.options.log.info(`${who}: not asking the backend again ${Math.round((this.now() - outage.at) / 1000)} s after it failed`);
      return new Promise((resolve, reject) => void this.fail([{ refs, who, resolve, reject }], outage.error));
    }
    const missing = this.knownMissing(refs);
    if (missing) {
      this.options.log.info(
        `not asking the backend again for ${refs.length} reference(s) it did not have ${Math.round((this.now() - missing.at) / 1000)} s ago`,
      );
      return Promise.reject(missing.error);
    }
    return new Promise((resolve, reject) => {
      const waiter: Waiter = { refs, who, resolve, reject };
      const riding = [...this.inFlight].find((b) => refs.every((r) => b.raws.has(r.raw)));
      if (riding) {
        riding.waiters.push(waiter);
        return;
      }
      if (!this.gathering) {
        const batch: Batch = { raws: new Set(), waiters: [], sent: false };
        this.gathering = batch;
        const prefetch =
          this.options.ttlSeconds > 0 ? this.options.prefetch.filter((r) => !this.isFresh(r.raw) && !this.knownMissing([r])) : [];
        this.prefetched.set(batch, prefetch);
        setTimeout(() => void this.send(batch), this.options.mergeWindowMs ?? 20);
      }
      for (const r of refs) this.gathering.raws.add(r.raw);
      this.gathering.waiters.push(waiter);
    });
  }

  private readonly prefetched = new WeakMap<Batch, readonly SecretReference[]>();

  /** Fresh batches by credential load, so that a load's later IDs share its first one's. */
  private readonly freshLoads = new Map<string, { at: number; values: Promise<Map<string, string>> }>();

  /**
   * For a refresh unit: `refs` (every reference of the unit it refreshes) from the backend
   * now, bypassing the memory cache and the not-found and outage windows; one batch per
   * `load` (the refresh unit and the pid loading its credentials: systemd loads them one
   * after another). The batch updates the memory cache and the sealed values, so the restart
   * that may follow gets these values; a failure is never answered from either.
   */
  resolveFresh(refs: readonly SecretReference[], load: string, who = load): Promise<ReadonlyMap<string, string>> {
    const now = this.now();
    for (const [key, f] of this.freshLoads) if (now - f.at >= freshLoadMs) this.freshLoads.delete(key);
    let hit = this.freshLoads.get(load);
    if (!hit) {
      this.options.log.info(`${who}: a refresh: ${refs.length} reference(s) fresh from the backend`);
      hit = { at: now, values: this.fetch(refs, 1) };
      // Settled by each caller; a rejection nobody awaits yet is not unhandled.
      hit.values.catch(() => undefined);
      this.freshLoads.set(load, hit);
    }
    return hit.values;
  }

  private isFresh(raw: string): boolean {
    const hit = this.cache.get(raw);
    return hit !== undefined && this.now() - hit.at < this.options.ttlSeconds * 1000;
  }

  private recentOutage(): { error: HomelabError; at: number } | undefined {
    if (!this.outage) return undefined;
    if (this.now() - this.outage.at < (this.options.outageSeconds ?? 30) * 1000) return this.outage;
    this.outage = undefined;
    return undefined;
  }

  private knownMissing(refs: readonly SecretReference[]): { error: HomelabError; at: number } | undefined {
    const key = missingKey(refs);
    const hit = this.notFound.get(key);
    if (hit === undefined) return undefined;
    if (this.now() - hit.at < this.notFoundMs) return hit;
    this.notFound.delete(key);
    return undefined;
  }

  /** Fail a request whose own references alone were just asked for. */
  private async rejectAlone(waiter: Waiter, error: unknown): Promise<void> {
    if (this.notFoundMs > 0 && error instanceof HomelabError && error.exitCode === ExitCode.notFound)
      this.notFound.set(missingKey(waiter.refs), { error, at: this.now() });
    await this.fail([waiter], error);
  }

  /** Fail these requests with a backend error, except those the sealed values may answer (75 only). */
  private async fail(waiters: readonly Waiter[], error: unknown): Promise<void> {
    const { lastGood, log } = this.options;
    if (!lastGood || !cacheMayStandIn(error)) {
      if (lastGood && error instanceof HomelabError)
        log.info(`cached values are used only for recognised temporary failures (exit 75), not for this one (${whyNot(error)})`);
      for (const w of waiters) w.reject(error);
      return;
    }
    if (this.outage?.error !== error) this.outage = { error, at: this.now() };
    for (const w of waiters) {
      let hit;
      try {
        hit = await lastGood.lookup(w.refs);
      } catch (e) {
        hit = { ok: false as const, why: (e as Error).message };
      }
      if (hit.ok) {
        log.warn(`${w.who}: served cached values from ${humanAge(hit.ageMs)} ago: backend failed: ${error.message}`);
        w.resolve(hit.values);
      } else {
        log.warn(`${w.who}: cached values not used: ${hit.why}`);
        w.reject(error);
      }
    }
  }

  private fromCache(refs: readonly SecretReference[]): Map<string, string> | undefined {
    if (this.options.ttlSeconds <= 0 || !refs.every((r) => this.isFresh(r.raw))) return undefined;
    return new Map(refs.map((r) => [r.raw, this.cache.get(r.raw)!.value]));
  }

  private async send(batch: Batch): Promise<void> {
    if (this.gathering === batch) this.gathering = undefined;
    batch.sent = true;
    const own = uniqueReferences(batch.waiters.flatMap((w) => w.refs));
    const extra = (this.prefetched.get(batch) ?? []).filter((r) => !batch.raws.has(r.raw));
    for (const r of extra) batch.raws.add(r.raw);
    this.inFlight.add(batch);
    try {
      const values = await this.fetch([...own, ...extra], batch.waiters.length);
      for (const w of batch.waiters) w.resolve(values);
    } catch (error) {
      // Its waiters are settled below, some of them before the last await: a request arriving
      // meanwhile must not ride on it (it would wait forever) but start a batch of its own.
      this.inFlight.delete(batch);
      // A reference the backend does not have (or cannot render) fails only the requests that
      // name it: without the prefetched rest of the policy, then each request alone.
      if (!isSpecific(error)) {
        await this.fail(batch.waiters, error);
      } else if (extra.length > 0) {
        this.options.log.info(
          `batch failed (${(error as Error).message}); again with only what the ${batch.waiters.length} request(s) need`,
        );
        await this.settle(batch.waiters, own);
      } else {
        await this.eachAlone(batch.waiters, error);
      }
    } finally {
      this.inFlight.delete(batch);
    }
  }

  private async settle(waiters: readonly Waiter[], refs: readonly SecretReference[]): Promise<void> {
    try {
      const values = await this.fetch(refs, waiters.length);
      for (const w of waiters) w.resolve(values);
    } catch (error) {
      if (isSpecific(error)) await this.eachAlone(waiters, error);
      else await this.fail(waiters, error);
    }
  }

  private async eachAlone(waiters: readonly Waiter[], error: unknown): Promise<void> {
    // Every caller asked the backend for exactly these waiters' references: one waiter's
    // error is about its own.
    if (waiters.length === 1) {
      await this.rejectAlone(waiters[0]!, error);
      return;
    }
    this.options.log.info(`batch failed (${(error as Error).message}); resolving each of its ${waiters.length} request(s) alone`);
    await Promise.all(
      waiters.map(async (w) => {
        try {
          w.resolve(await this.fetch(w.refs, 1));
        } catch (alone) {
          await this.rejectAlone(w, alone);
        }
      }),
    );
  }

  private async fetch(refs: readonly SecretReference[], requests: number): Promise<Map<string, string>> {
    this.batches++;
    const { log } = this.options;
    log.info(`backend batch ${this.batches}: ${refs.length} reference(s) for ${requests} request(s)`);
    try {
      this.source ??= this.options.createSource();
      const source = await this.source;
      const values = await resolveReferences(source, refs, { deadlineSeconds: this.options.deadlineSeconds, log });
      const at = this.now();
      this.outage = undefined;
      if (this.options.ttlSeconds > 0) for (const [raw, value] of values) this.cache.set(raw, { value, at });
      // One write per backend batch, not awaited: the waiting units are answered first.
      if (this.options.lastGood) this.storing = this.options.lastGood.remember(refs, values, at);
      return values;
    } catch (error) {
      // Whatever state the client is in after a failure that is not about one reference (the
      // backend unreachable, a token rejected or not readable yet), the next batch builds a new one.
      if (!(error instanceof HomelabError) || (error.exitCode !== ExitCode.notFound && error.exitCode !== ExitCode.dataErr))
        this.source = undefined;
      throw error;
    }
  }
}

/** How long one credential load's fresh batch answers its later IDs. */
const freshLoadMs = 60_000;

const missingKey = (refs: readonly SecretReference[]): string => [...new Set(refs.map((r) => r.raw))].sort().join("\n");
