// The agent batcher with the sealed last-known-good cache: real file backend, real sealed file
// in a temp dir, an injected clock.
import { randomBytes } from "node:crypto";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { Batcher } from "../../helper/src/agent/batcher.js";
import { LastGood } from "../../helper/src/agent/last-good.js";
import { readSealed, sealedPath } from "../../helper/src/agent/sealed.js";
import { HomelabError, notFoundError, permissionError, tempFailError, dataError, configError } from "../../helper/src/errors.js";
import type { Logger } from "../../helper/src/log.js";
import { parseReference } from "../../helper/src/reference.js";
import { createFileSource } from "../../helper/src/sources/file.js";
import type { Source } from "../../helper/src/sources/source.js";
import type { SourceConfig } from "../../helper/src/spec.js";

const a = parseReference("op://V/a/password");
const b = parseReference("op://V/b/password");
const otp = parseReference("op://V/a/password?attribute=otp");
const source: SourceConfig = { type: "connect", host: "http://127.0.0.1:8080" };
const maxAge = 4 * 3600;

let dir: string;
let vaultFile: string;
let key: Buffer;
let clock: number;
let failWith: HomelabError | undefined;
let lines: { level: string; message: string }[];

const log: Logger = {
  error: (m) => lines.push({ level: "error", message: m }),
  warn: (m) => lines.push({ level: "warn", message: m }),
  info: (m) => lines.push({ level: "info", message: m }),
  debug: () => {},
};

beforeEach(() => {
  const root = mkdtempSync(join(tmpdir(), "hs-lastgood-"));
  dir = join(root, "state");
  vaultFile = join(root, "vault.json");
  writeFileSync(
    vaultFile,
    JSON.stringify({ vaults: { V: { items: { a: { fields: { password: "A1" } }, b: { fields: { password: "B1" } } } } } }),
    {
      mode: 0o600,
    },
  );
  key = randomBytes(32);
  clock = 1_800_000_000_000;
  failWith = undefined;
  lines = [];
});
afterEach(() => rmSync(join(dir, ".."), { recursive: true, force: true }));

let backendCalls = 0;
const createSource = (): Promise<Source> => {
  const inner = createFileSource(vaultFile);
  return Promise.resolve({
    name: "test",
    resolveAll: async (refs, context) => {
      backendCalls++;
      if (failWith) throw failWith;
      return inner.resolveAll(refs, context);
    },
  });
};
const lastGood = () => new LastGood({ dir, key, source, maxAgeSeconds: maxAge, log, now: () => clock });
/** A fresh agent (empty memory: ttl 0), as after a restart. */
const agent = (cache = lastGood()) =>
  new Batcher({ createSource, prefetch: [], ttlSeconds: 0, deadlineSeconds: 1, log, mergeWindowMs: 1, now: () => clock, lastGood: cache });
const warm = async () => {
  const batcher = agent();
  expect(await batcher.resolve([a, b], "warm.service: credential x")).toEqual(
    new Map([
      [a.raw, "A1"],
      [b.raw, "B1"],
    ]),
  );
  await batcher.storing;
};
const warnings = () => lines.filter((l) => l.level === "warn").map((l) => l.message);

describe("agent: sealed last-known-good values", () => {
  it("a fresh batch is sealed (one write per batch); a temporary failure (75) is answered from it, with a warning naming who and the age", async () => {
    const cache = lastGood();
    const batcher = agent(cache);
    await Promise.all([batcher.resolve([a]), batcher.resolve([b]), batcher.resolve([a, b])]);
    await batcher.storing;
    expect(batcher.batches).toBe(1);
    expect(cache.writes).toBe(1);
    const read = await readSealed({ dir, key, source });
    expect(read.kind === "ok" && [...read.values]).toEqual([
      [a.raw, { value: "A1", at: clock }],
      [b.raw, { value: "B1", at: clock }],
    ]);
    expect(readFileSync(sealedPath(dir)).includes(Buffer.from("A1"))).toBe(false);

    clock += 2 * 3600_000 - 1000_000; // 1 h 43 min later
    failWith = tempFailError("deadline of 1s passed (ECONNREFUSED)");
    const restarted = agent();
    expect(await restarted.resolve([a], "foo.service: credential db")).toEqual(new Map([[a.raw, "A1"]]));
    expect(warnings()).toEqual([
      "foo.service: credential db: served cached values from 1 h 43 min ago: backend failed: could not resolve op://V/a/password: deadline of 1s passed (ECONNREFUSED)",
    ]);
  });

  it.each([
    ["77 (token rejected)", permissionError("401 Unauthorized")],
    ["69 (not found)", notFoundError("no item a")],
    ["65 (bad data)", dataError("bad")],
    ["78 (configuration)", configError("bad")],
  ])("%s with a warm cache: not served from it", async (_, error) => {
    await warm();
    failWith = error;
    await expect(agent().resolve([a], "foo.service: credential db")).rejects.toMatchObject({ exitCode: error.exitCode });
    expect(warnings()).toEqual([]);
    expect(lines.map((l) => l.message).join("\n")).toMatch(
      new RegExp(`only for recognised temporary failures \\(exit 75\\), not for this one \\(exit ${error.exitCode}\\)`),
    );
  });

  it("an unrecognised backend error (75, retried) with a warm cache: not served from it (it could be a revoked account)", async () => {
    await warm();
    failWith = tempFailError("1Password request failed: service account is deactivated", { unrecognised: true });
    await expect(agent().resolve([a], "foo.service: credential db")).rejects.toMatchObject({ exitCode: 75 });
    expect(warnings()).toEqual([]);
    expect(lines.map((l) => l.message).join("\n")).toMatch(/not for this one \(exit 75, but an error nothing recognised\)/);
  });

  it("older than maxAge: refused, dropped from the file; the request fails with the 75", async () => {
    await warm();
    clock += maxAge * 1000 + 1;
    failWith = tempFailError("down");
    const cache = lastGood();
    await expect(agent(cache).resolve([a, b], "foo.service: credential db")).rejects.toMatchObject({ exitCode: 75 });
    expect(warnings()).toEqual([
      "foo.service: credential db: cached values not used: the value of op://V/a/password: it is 4 h old, older than the maximum age of 4 h",
    ]);
    await new Promise((r) => setTimeout(r, 50));
    const read = await readSealed({ dir, key, source });
    expect(read.kind === "ok" && read.values.size, "dropped and rewritten").toBe(0);
  });

  it("exactly maxAge old is still served; a reference never fetched or a one-time password is not", async () => {
    await warm();
    clock += maxAge * 1000;
    failWith = tempFailError("down");
    expect(await agent().resolve([b], "ok.service: credential x")).toEqual(new Map([[b.raw, "B1"]]));
    const c = parseReference("op://V/c/password");
    await expect(agent().resolve([a, c], "foo.service: credential y")).rejects.toMatchObject({ exitCode: 75 });
    await expect(agent().resolve([otp], "foo.service: credential z")).rejects.toMatchObject({ exitCode: 75 });
    expect(warnings().slice(1)).toEqual([
      "foo.service: credential y: cached values not used: none stored for op://V/c/password",
      "foo.service: credential z: cached values not used: op://V/a/password?attribute=otp is a one-time password (never cached)",
    ]);
  });

  it("a clock gone back (values stored in the future): refused, kept", async () => {
    await warm();
    clock -= 60_000;
    failWith = tempFailError("down");
    await expect(agent().resolve([a], "foo.service: credential db")).rejects.toMatchObject({ exitCode: 75 });
    expect(warnings()[0]).toMatch(/cached values not used: .*in the future/);
    const read = await readSealed({ dir, key, source });
    expect(read.kind === "ok" && read.values.size).toBe(2);
  });

  it("a tampered file, another key or another source: refused with a warning, no crash; the next fresh batch replaces it", async () => {
    await warm();
    const path = sealedPath(dir);
    const bytes = readFileSync(path);
    bytes[40] = bytes[40]! ^ 1;
    writeFileSync(path, bytes);
    failWith = tempFailError("down");
    await expect(agent().resolve([a], "foo.service: credential db")).rejects.toMatchObject({ exitCode: 75 });
    expect(warnings()).toEqual([
      `agent cache: ignoring the sealed values: ${path} does not authenticate (another key, another source, or altered)`,
      "foo.service: credential db: cached values not used: none stored for op://V/a/password",
    ]);

    failWith = undefined;
    await warm();
    key = randomBytes(32); // a new key (the old one did not unseal on this host)
    failWith = tempFailError("down");
    await expect(agent().resolve([a], "foo.service: credential db")).rejects.toMatchObject({ exitCode: 75 });
    expect(warnings().at(-2)).toMatch(/does not authenticate/);

    failWith = undefined;
    const fresh = agent();
    await fresh.resolve([a]);
    await fresh.storing;
    expect((await readSealed({ dir, key, source })).kind).toBe("ok");
  });

  it("after a temporary failure, loads within 30 s are answered from the sealed values without another backend wait; later ones ask again", async () => {
    await warm();
    clock += 60_000;
    failWith = tempFailError("down");
    const batcher = agent();
    backendCalls = 0;
    // A consumer's guard (ExecStartPre=) and its ExecStart= load the credential one after the other.
    expect(await batcher.resolve([a], "foo.service: credential db")).toEqual(new Map([[a.raw, "A1"]]));
    expect(backendCalls).toBe(1);
    clock += 29_000;
    expect(await batcher.resolve([a], "foo.service: credential db")).toEqual(new Map([[a.raw, "A1"]]));
    await expect(batcher.resolve([parseReference("op://V/c/password")], "bar.service: credential x")).rejects.toMatchObject({
      exitCode: 75,
    });
    expect(backendCalls, "no backend call within the window").toBe(1);
    expect(warnings().filter((w) => /served cached values/.test(w))).toHaveLength(2);

    clock += 1_000;
    failWith = undefined;
    expect(await batcher.resolve([a], "foo.service: credential db")).toEqual(new Map([[a.raw, "A1"]]));
    expect(backendCalls, "asks again after the window").toBe(2);
  });

  it("a store that fails only warns: the fresh values are served", async () => {
    const blocked = join(dir, "..", "not-a-dir");
    writeFileSync(blocked, "x");
    const batcher = new Batcher({
      createSource,
      prefetch: [],
      ttlSeconds: 0,
      deadlineSeconds: 1,
      log,
      mergeWindowMs: 1,
      lastGood: new LastGood({ dir: blocked, key, source, maxAgeSeconds: maxAge, log }),
    });
    expect(await batcher.resolve([a])).toEqual(new Map([[a.raw, "A1"]]));
    await batcher.storing;
    expect(warnings().at(-1)).toMatch(/could not update the sealed values: .*not-a-dir is not a directory/);
  });
});
