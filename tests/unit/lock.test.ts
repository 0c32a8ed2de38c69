import { spawnSync } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, rmSync, unlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { acquireLock, type LockClock } from "../../helper/src/lock.js";
import type { Logger } from "../../helper/src/log.js";

function recordingLogger() {
  const lines: string[] = [];
  const log: Logger = { error: (m) => lines.push(m), warn: (m) => lines.push(m), info: (m) => lines.push(m), debug: (m) => lines.push(m) };
  return { log, lines };
}

/**
 * A clock that never waits: each sleep moves virtual time forward at once and may run a step
 * of the test (e.g. release the lock after the third poll), so no test depends on real time.
 */
function virtualClock(onSleep: (sleeps: number) => void | Promise<void> = () => undefined) {
  let now = 0;
  let sleeps = 0;
  const clock: LockClock = {
    now: () => now,
    async sleep(ms) {
      now += ms;
      sleeps += 1;
      await onSleep(sleeps);
    },
  };
  return { clock, sleeps: () => sleeps, elapsed: () => now };
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
    const { clock, sleeps, elapsed } = virtualClock(async (n) => {
      if (n === 6) {
        order.push("first releases");
        await first.release();
      }
    });
    const lock = await acquireLock(path, { log: second.log, pollMs: 20, reportMs: 50, clock });
    order.push("second acquired");
    expect(order).toEqual(["first releases", "second acquired"]);
    expect(sleeps()).toBe(6);
    // Six polls of 20-29 virtual ms each: reported at the first and then at most every 50 ms.
    const reports = second.lines.filter((l) => l.startsWith("waiting for lock"));
    expect(reports.length).toBeGreaterThanOrEqual(2);
    expect(reports.length).toBeLessThanOrEqual(Math.ceil(elapsed() / 50));
    expect(reports[0]).toBe(`waiting for lock ${path} held by pid ${process.pid}`);
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

  it("gives up after the timeout, with exit class 75", async () => {
    const held = await acquireLock(path, { log: recordingLogger().log });
    const { clock, elapsed } = virtualClock();
    await expect(acquireLock(path, { log: recordingLogger().log, timeoutMs: 100, pollMs: 20, clock })).rejects.toMatchObject({
      exitCode: 75,
      message: expect.stringMatching(/gave up waiting/) as unknown,
    });
    expect(elapsed()).toBeGreaterThanOrEqual(100);
    expect(elapsed()).toBeLessThan(100 + 30);
    await held.release();
  });

  it("gives up at once on abort, with exit class 75", async () => {
    const held = await acquireLock(path, { log: recordingLogger().log });
    const controller = new AbortController();
    // A real 10 s poll: only the abort can end this wait inside the test's own timeout.
    const pending = acquireLock(path, { log: recordingLogger().log, signal: controller.signal, pollMs: 10_000 });
    setTimeout(() => controller.abort(), 0);
    await expect(pending).rejects.toMatchObject({ exitCode: 75, message: expect.stringMatching(/interrupted/) as unknown });
    await held.release();
  });
});
