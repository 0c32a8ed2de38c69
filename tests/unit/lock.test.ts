import { spawnSync } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, rmSync, unlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { acquireLock } from "../../helper/src/lock.js";
import type { Logger } from "../../helper/src/log.js";

function recordingLogger() {
  const lines: string[] = [];
  const log: Logger = { error: (m) => lines.push(m), warn: (m) => lines.push(m), info: (m) => lines.push(m), debug: (m) => lines.push(m) };
  return { log, lines };
}

describe("the --serialize lock", () => {
  let dir: string;
  let path: string;
  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), "hs-lock-"));
    path = join(dir, "sub", "fetch.lock");
  });
  afterEach(() => rmSync(dir, { recursive: true, force: true }));

  it("creates its directory and records our pid; release removes it", async () => {
    const { log, lines } = recordingLogger();
    const lock = await acquireLock(path, { log });
    expect(readFileSync(path, "utf8")).toMatch(new RegExp(`^${process.pid} [0-9a-f]{16}\\n$`));
    await lock.release();
    expect(existsSync(path)).toBe(false);
    expect(lines).toEqual([`acquired lock ${path}`, `released lock ${path}`]);
  });

  it("a second holder waits, logs while waiting, and gets the lock once it is released", async () => {
    const first = await acquireLock(path, { log: recordingLogger().log });
    const second = recordingLogger();
    const order: string[] = [];
    const waiting = acquireLock(path, { log: second.log, pollMs: 20, reportMs: 50 }).then((lock) => {
      order.push("second acquired");
      return lock;
    });
    await new Promise((r) => setTimeout(r, 150));
    order.push("first releases");
    await first.release();
    const lock = await waiting;
    expect(order).toEqual(["first releases", "second acquired"]);
    expect(second.lines.filter((l) => l.startsWith("waiting for lock")).length).toBeGreaterThanOrEqual(2);
    await lock.release();
  });

  it("takes over a lock whose holder no longer runs", async () => {
    const dead = spawnSync(process.execPath, ["-e", "0"]).pid;
    const { log, lines } = recordingLogger();
    const first = await acquireLock(path, { log: recordingLogger().log });
    await first.release();
    writeFileSync(path, `${dead}\n`);
    const lock = await acquireLock(path, { log, pollMs: 10 });
    expect(lines.some((l) => l.includes(`from pid ${dead}, which no longer runs`))).toBe(true);
    expect(readFileSync(path, "utf8")).toMatch(new RegExp(`^${process.pid} [0-9a-f]{16}\\n$`));
    await lock.release();
  });

  it("release never removes a lock that is no longer its own", async () => {
    const lock = await acquireLock(path, { log: recordingLogger().log });
    unlinkSync(path);
    writeFileSync(path, "1\n");
    await lock.release();
    expect(readFileSync(path, "utf8")).toBe("1\n");
  });

  it("gives up after the timeout and at once on abort, with exit class 75", async () => {
    writeFileSync(path.replace("/sub/", "/"), "");
    const held = await acquireLock(path, { log: recordingLogger().log });
    await expect(acquireLock(path, { log: recordingLogger().log, timeoutMs: 100, pollMs: 20 })).rejects.toMatchObject({
      exitCode: 75,
      message: expect.stringMatching(/gave up waiting/) as unknown,
    });
    const controller = new AbortController();
    const started = performance.now();
    const pending = acquireLock(path, { log: recordingLogger().log, signal: controller.signal, pollMs: 10_000 });
    setTimeout(() => controller.abort(), 50);
    await expect(pending).rejects.toMatchObject({ exitCode: 75, message: expect.stringMatching(/interrupted/) as unknown });
    expect(performance.now() - started).toBeLessThan(2000);
    await held.release();
  });
});
