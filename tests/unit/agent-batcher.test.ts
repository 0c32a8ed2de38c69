import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { randomBytes } from "node:crypto";
import { Batcher } from "../../helper/src/agent/batcher.js";
import { LastGood } from "../../helper/src/agent/last-good.js";
import { HomelabError, tempFailError } from "../../helper/src/errors.js";
import { silentLogger } from "../../helper/src/log.js";
import { parseReference } from "../../helper/src/reference.js";
import { createFileSource } from "../../helper/src/sources/file.js";
import type { Source } from "../../helper/src/sources/source.js";

const ref = (raw: string) => parseReference(raw);
const a = ref("op://V/a/password");
const b = ref("op://V/b/password");
const c = ref("op://V/c/password");
const missing = ref("op://V/nope/password");

let dir: string;
let vaultFile: string;
const writeVault = (values: Record<string, string>) =>
  writeFileSync(
    vaultFile,
    JSON.stringify({
      vaults: { V: { items: Object.fromEntries(Object.entries(values).map(([item, v]) => [item, { fields: { password: v } }])) } },
    }),
  );

beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), "hs-batcher-"));
  vaultFile = join(dir, "vault.json");
  writeVault({ a: "A1", b: "B1", c: "C1" });
});
afterEach(() => rmSync(dir, { recursive: true, force: true }));

/** The real file backend, with every resolveAll call recorded. */
function counting(fail?: () => HomelabError | undefined, delayMs = 0) {
  const calls: string[][] = [];
  let created = 0;
  const createSource = (): Promise<Source> => {
    created++;
    const inner = createFileSource(vaultFile);
    return Promise.resolve({
      name: "counted",
      resolveAll: async (refs, context) => {
        calls.push(refs.map((r) => r.raw));
        await new Promise((r) => setTimeout(r, delayMs));
        const error = fail?.();
        if (error) throw error;
        return inner.resolveAll(refs, context);
      },
    });
  };
  return { calls, createSource, created: () => created };
}

describe("agent batcher", () => {
  it("merges concurrent requests into one backend batch that also fetches everything the policy names", async () => {
    const backend = counting();
    const batcher = new Batcher({
      createSource: backend.createSource,
      prefetch: [a, b, c],
      ttlSeconds: 60,
      deadlineSeconds: 5,
      log: silentLogger,
    });
    const got = await Promise.all([batcher.resolve([a]), batcher.resolve([b]), batcher.resolve([a, b])]);
    expect([got[0].get(a.raw), got[1].get(b.raw), got[2].get(a.raw), got[2].get(b.raw)]).toEqual(["A1", "B1", "A1", "B1"]);
    expect(backend.calls).toEqual([["op://V/a/password", "op://V/b/password", "op://V/c/password"]]);
    // A request arriving while that batch is in flight rides on it; later ones come from memory.
    expect((await batcher.resolve([c])).get("op://V/c/password")).toBe("C1");
    expect(backend.calls.length).toBe(1);
    expect(batcher.batches).toBe(1);
  });

  it("a request that comes while a batch is in flight and is covered by it rides on it", async () => {
    const backend = counting(undefined, 200);
    const batcher = new Batcher({
      createSource: backend.createSource,
      prefetch: [a, b],
      ttlSeconds: 0,
      deadlineSeconds: 5,
      log: silentLogger,
      mergeWindowMs: 0,
    });
    const first = batcher.resolve([a, b]);
    await new Promise((r) => setTimeout(r, 50)); // the batch is sent, the backend still busy
    const second = batcher.resolve([b]);
    expect((await second).get("op://V/b/password")).toBe("B1");
    await first;
    expect(backend.calls).toEqual([["op://V/a/password", "op://V/b/password"]]);
  });

  it("serves from memory within the TTL (0 backend calls), and asks again once it has passed", async () => {
    let clock = 1_000_000;
    const backend = counting();
    const batcher = new Batcher({
      createSource: backend.createSource,
      prefetch: [a],
      ttlSeconds: 30,
      deadlineSeconds: 5,
      log: silentLogger,
      now: () => clock,
    });
    expect((await batcher.resolve([a])).get(a.raw)).toBe("A1");
    writeVault({ a: "A2", b: "B1", c: "C1" });
    clock += 29_999;
    expect((await batcher.resolve([a])).get(a.raw), "still within the TTL").toBe("A1");
    expect(backend.calls.length).toBe(1);
    clock += 1;
    expect((await batcher.resolve([a])).get(a.raw), "the TTL has passed").toBe("A2");
    expect(backend.calls.length).toBe(2);
  });

  it("TTL 0: every request is fresh from the backend, and nothing beyond it is prefetched", async () => {
    const backend = counting();
    const batcher = new Batcher({
      createSource: backend.createSource,
      prefetch: [a, b, c],
      ttlSeconds: 0,
      deadlineSeconds: 5,
      log: silentLogger,
    });
    expect((await batcher.resolve([a])).get(a.raw)).toBe("A1");
    writeVault({ a: "A2", b: "B1", c: "C1" });
    expect((await batcher.resolve([a])).get(a.raw)).toBe("A2");
    expect(backend.calls).toEqual([["op://V/a/password"], ["op://V/a/password"]]);
  });

  it("a missing reference fails only the requests that name it (69), the others are served", async () => {
    const backend = counting();
    const batcher = new Batcher({
      createSource: backend.createSource,
      prefetch: [a, missing, b],
      ttlSeconds: 60,
      deadlineSeconds: 5,
      log: silentLogger,
    });
    const [okA, bad, okB] = await Promise.allSettled([batcher.resolve([a]), batcher.resolve([missing]), batcher.resolve([b])]);
    expect(okA.status === "fulfilled" && okA.value.get(a.raw)).toBe("A1");
    expect(okB.status === "fulfilled" && okB.value.get(b.raw)).toBe("B1");
    expect(bad.status).toBe("rejected");
    const error = (bad as PromiseRejectedResult).reason as HomelabError;
    expect(error.exitCode).toBe(69);
    expect(error.message).toMatch(/op:\/\/V\/nope\/password/);
    expect(backend.calls[0], "first the merged batch").toEqual([a.raw, missing.raw, b.raw]);
    expect(backend.calls.slice(1).sort(), "then each request alone").toEqual([[a.raw], [b.raw], [missing.raw]].sort());
    expect(backend.calls.length).toBe(4);
  });

  it("a not-found reference is remembered for min(TTL, 30 s): a restart loop of its unit does not ask the backend per attempt", async () => {
    const backend = counting();
    let clock = 1_000_000;
    const batcher = new Batcher({
      createSource: backend.createSource,
      prefetch: [a, missing],
      ttlSeconds: 300,
      deadlineSeconds: 5,
      log: silentLogger,
      now: () => clock,
    });
    const notFound = (refs = [missing]) =>
      batcher.resolve(refs).then(
        () => undefined,
        (e: unknown) => e as HomelabError,
      );
    const first = await notFound();
    expect(first?.exitCode).toBe(69);
    expect(backend.calls, "the batch with the policy's rest, then the request alone").toEqual([[missing.raw, a.raw], [missing.raw]]);
    for (let i = 0; i < 5; i++) {
      clock += 5_000;
      const again = await notFound();
      expect(again?.exitCode).toBe(69);
      expect(again?.message, "the same error, naming the reference").toBe(first?.message);
    }
    expect(backend.calls.length, "five more attempts within 25 s: no backend read").toBe(2);
    expect((await batcher.resolve([a])).get(a.raw), "other references unaffected").toBe("A1");
    expect(backend.calls[2], "and the known-missing one is not prefetched with them").toEqual([a.raw]);
    clock += 6_000; // 31 s after the backend said so: ask again
    writeVault({ a: "A1", b: "B1", c: "C1", nope: "N1" });
    expect((await batcher.resolve([missing])).get(missing.raw), "it exists now").toBe("N1");
    expect(backend.calls.length).toBe(4);
  });

  it("a request that comes just after a failed batch is answered, not left riding on it", async () => {
    const backend = counting();
    const batcher = new Batcher({
      createSource: backend.createSource,
      prefetch: [a, missing],
      ttlSeconds: 300,
      notFoundSeconds: 0,
      deadlineSeconds: 5,
      log: silentLogger,
    });
    // The second request is made in the first one's rejection handler: before the failed batch
    // has finished its own bookkeeping.
    const second = new Promise<string>((settle) => {
      batcher.resolve([missing]).then(
        () => settle("the first one served"),
        () =>
          batcher.resolve([missing]).then(
            () => settle("served"),
            (e: unknown) => settle(`refused ${(e as HomelabError).exitCode}`),
          ),
      );
    });
    const hung = new Promise<string>((r) => setTimeout(() => r("still waiting after 3 s"), 3000).unref());
    expect(await Promise.race([second, hung])).toBe("refused 69");
  });

  it("the not-found window: TTL below 30 s bounds it, the option sets it, 0 turns it off", async () => {
    for (const [ttlSeconds, notFoundSeconds, asksAt] of [
      [10, undefined, 10_000],
      [300, 5, 5_000],
      [300, 0, 1],
    ] as const) {
      const backend = counting();
      let clock = 0;
      const batcher = new Batcher({
        createSource: backend.createSource,
        prefetch: [],
        ttlSeconds,
        ...(notFoundSeconds === undefined ? {} : { notFoundSeconds }),
        deadlineSeconds: 5,
        log: silentLogger,
        now: () => clock,
      });
      await expect(batcher.resolve([missing])).rejects.toMatchObject({ exitCode: 69 });
      clock = asksAt - 1;
      await expect(batcher.resolve([missing])).rejects.toMatchObject({ exitCode: 69 });
      expect(backend.calls.length, `ttl ${ttlSeconds}, option ${notFoundSeconds}: remembered until ${asksAt - 1} ms`).toBe(
        asksAt === 1 ? 2 : 1,
      );
      clock = asksAt;
      await expect(batcher.resolve([missing])).rejects.toMatchObject({ exitCode: 69 });
      expect(backend.calls.length, `ttl ${ttlSeconds}, option ${notFoundSeconds}: asked again at ${asksAt} ms`).toBe(asksAt === 1 ? 3 : 2);
    }
  });

  it("a missing reference elsewhere in the policy costs one more batch, not one per request", async () => {
    const backend = counting();
    const batcher = new Batcher({
      createSource: backend.createSource,
      prefetch: [a, b, missing],
      ttlSeconds: 60,
      deadlineSeconds: 5,
      log: silentLogger,
    });
    const got = await Promise.all([batcher.resolve([a]), batcher.resolve([b])]);
    expect([got[0].get(a.raw), got[1].get(b.raw)]).toEqual(["A1", "B1"]);
    expect(backend.calls).toEqual([
      [a.raw, b.raw, missing.raw],
      [a.raw, b.raw],
    ]);
  });

  it("after a transient failure the next request builds a new backend client and succeeds", async () => {
    let failures = 1;
    const backend = counting(() => (failures-- > 0 ? tempFailError("backend unreachable") : undefined));
    const batcher = new Batcher({
      createSource: backend.createSource,
      prefetch: [a],
      ttlSeconds: 60,
      deadlineSeconds: 5,
      log: silentLogger,
    });
    const error = await batcher.resolve([a]).catch((e: unknown) => e);
    expect((error as HomelabError).exitCode).toBe(75);
    expect((error as HomelabError).message).toMatch(/could not resolve op:\/\/V\/a\/password: backend unreachable/);
    expect((await batcher.resolve([a])).get(a.raw)).toBe("A1");
    expect(backend.created()).toBe(2);
  });

  it("a backend that never answers fails the request at the deadline (75)", async () => {
    const batcher = new Batcher({
      createSource: () =>
        Promise.resolve<Source>({
          name: "hang",
          resolveAll: (_refs, { signal }) =>
            new Promise((_, reject) => signal.addEventListener("abort", () => reject(signal.reason as Error))),
        }),
      prefetch: [a],
      ttlSeconds: 60,
      deadlineSeconds: 0.2,
      log: silentLogger,
    });
    const error = await batcher.resolve([a]).catch((e: unknown) => e);
    expect((error as HomelabError).exitCode).toBe(75);
  });
  describe("fresh requests (a refresh unit's credential loads)", () => {
    const make = (backend: ReturnType<typeof counting>, clock: { now: number }, lastGood?: LastGood) =>
      new Batcher({
        createSource: backend.createSource,
        prefetch: [a, b, c],
        ttlSeconds: 300,
        deadlineSeconds: 5,
        log: silentLogger,
        now: () => clock.now,
        ...(lastGood ? { lastGood } : {}),
      });

    it("costs one backend batch for all the unit's references even within the TTL, and updates the memory cache", async () => {
      const backend = counting();
      const clock = { now: 1_000_000 };
      const batcher = make(backend, clock);
      expect((await batcher.resolve([a])).get(a.raw)).toBe("A1");
      expect(backend.calls.length).toBe(1);
      writeVault({ a: "A2", b: "B2", c: "C1" });
      clock.now += 10_000;
      expect((await batcher.resolve([a])).get(a.raw), "a plain request within the TTL: from memory").toBe("A1");
      expect(backend.calls.length).toBe(1);
      // One credential load of the refresh unit (pid 41) asks for its first ID: the unit's every reference, now.
      const first = await batcher.resolveFresh([a, b], "refresh.service/41");
      expect([first.get(a.raw), first.get(b.raw)]).toEqual(["A2", "B2"]);
      expect(backend.calls).toEqual([
        [a.raw, b.raw, c.raw],
        [a.raw, b.raw],
      ]);
      // Its next IDs in the same load share that batch.
      expect((await batcher.resolveFresh([a, b], "refresh.service/41")).get(b.raw)).toBe("B2");
      expect(backend.calls.length).toBe(2);
      // The service's restart gets the new values from memory.
      expect((await batcher.resolve([a, b])).get(a.raw)).toBe("A2");
      expect(backend.calls.length, "the restart's loads cost no batch").toBe(2);
      // The next refresh run (another load) asks again, still within the TTL.
      clock.now += 1_000;
      await batcher.resolveFresh([a, b], "refresh.service/97");
      expect(backend.calls.length).toBe(3);
    });

    it("a failed fresh batch fails the load: neither memory nor the sealed values stand in, and the cache keeps the old values", async () => {
      let down = false;
      const backend = counting(() => (down ? tempFailError("connect: ECONNREFUSED") : undefined));
      const clock = { now: 1_800_000_000_000 };
      const root = mkdtempSync(join(tmpdir(), "hs-batcher-lg-"));
      const lastGood = new LastGood({
        dir: join(root, "state"),
        key: randomBytes(32),
        source: { type: "file", path: vaultFile },
        maxAgeSeconds: 3600,
        log: silentLogger,
        now: () => clock.now,
      });
      try {
        const batcher = make(backend, clock, lastGood);
        await batcher.resolve([a]);
        await batcher.storing;
        down = true;
        const error = await batcher.resolveFresh([a, b], "refresh.service/41").then(
          () => undefined,
          (e: unknown) => e as HomelabError,
        );
        expect(error?.exitCode).toBe(75);
        expect(backend.calls.length).toBe(2);
        // A plain request still gets the cached value; the service was never told anything new.
        expect((await batcher.resolve([a])).get(a.raw)).toBe("A1");
        expect(backend.calls.length).toBe(2);
        // The sealed values were written by the fresh batch after a rotation.
        down = false;
        writeVault({ a: "A3", b: "B3", c: "C1" });
        clock.now += 1_000;
        await batcher.resolveFresh([a, b], "refresh.service/42");
        await batcher.storing;
        const sealed = await lastGood.lookup([a, b]);
        expect(sealed.ok && [sealed.values.get(a.raw), sealed.values.get(b.raw)]).toEqual(["A3", "B3"]);
      } finally {
        rmSync(root, { recursive: true, force: true });
      }
    });
  });
});
