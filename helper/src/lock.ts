import { constants } from "node:fs";
import { link, mkdir, open, readFile, rename, unlink } from "node:fs/promises";
import { randomBytes } from "node:crypto";
import { dirname } from "node:path";
import { cantCreateError, tempFailError } from "./errors.js";
import type { Logger } from "./log.js";
import { sleep } from "./retry.js";

export interface Lock {
  release(): Promise<void>;
}

export interface LockOptions {
  readonly log: Logger;
  readonly signal?: AbortSignal;
  readonly timeoutMs?: number;
  readonly pollMs?: number;
  /** How often to say that we are still waiting. */
  readonly reportMs?: number;
  /** Time and waiting, replaceable so tests need not wait in real time. */
  readonly clock?: LockClock;
}

export interface LockClock {
  now(): number;
  sleep(ms: number, signal?: AbortSignal): Promise<void>;
}

const realClock: LockClock = { now: () => performance.now(), sleep };

export const defaultLockPath = "/run/homelab-secrets/fetch.lock";

interface Holder {
  readonly pid: number | undefined;
  /** The whole file: "<pid> <random nonce>", unique to one acquisition. */
  readonly content: string;
}

/**
 * A host-wide lock file holding the owner's pid, created with O_EXCL. A lock whose owner
 * no longer exists (killed with SIGKILL) is taken over. Waits up to 5 minutes, polling
 * every ~100 ms (a boot storm hands over quickly), saying so every 5 seconds, and gives up
 * at once on the abort signal.
 *
 * Each acquisition writes a random nonce beside its pid, so a holder never removes a lock
 * that is no longer its own and a stale lock is only broken if it is still the same one.
 */
export async function acquireLock(path: string, options: LockOptions): Promise<Lock> {
  const { log, signal } = options;
  const timeoutMs = options.timeoutMs ?? 300_000;
  const pollMs = options.pollMs ?? 100;
  const reportMs = options.reportMs ?? 5000;
  const clock = options.clock ?? realClock;
  await mkdir(dirname(path), { recursive: true, mode: 0o755 }).catch(() => undefined);
  const started = clock.now();
  let lastReport = -Infinity;
  for (;;) {
    if (signal?.aborted) throw tempFailError(`interrupted while waiting for the lock ${path}`);
    const result = await tryCreate(path);
    if ("own" in result) {
      log.info(`acquired lock ${path}`);
      return { release: () => release(path, result.own, log) };
    }
    const { holder } = result;
    if (holder.pid !== undefined && !isAlive(holder.pid)) {
      log.warn(`taking over lock ${path} from pid ${holder.pid}, which no longer runs`);
      await breakStale(path, holder);
      continue;
    }
    const now = clock.now();
    if (now - started >= timeoutMs) {
      throw tempFailError(`gave up waiting ${Math.round(timeoutMs / 1000)}s for the lock ${path} (held by pid ${holder.pid ?? "?"})`);
    }
    if (now - lastReport >= reportMs) {
      log.info(`waiting for lock ${path} held by pid ${holder.pid ?? "?"}`);
      lastReport = now;
    }
    try {
      // Jitter keeps waiters from polling in lockstep.
      await clock.sleep(pollMs + Math.floor(Math.random() * (pollMs / 2)), signal);
    } catch {
      throw tempFailError(`interrupted while waiting for the lock ${path}`);
    }
  }
}

async function tryCreate(path: string): Promise<{ own: string } | { holder: Holder }> {
  const own = `${process.pid} ${randomBytes(8).toString("hex")}\n`;
  try {
    const handle = await open(path, constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | constants.O_NOFOLLOW, 0o644);
    try {
      await handle.writeFile(own);
      return { own };
    } finally {
      await handle.close();
    }
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    if (code !== "EEXIST") throw cantCreateError(`cannot create lock ${path}: ${code ?? "error"}`, error);
  }
  const content = await readLock(path);
  const pid = Number.parseInt(content ?? "", 10);
  // A lock being written this instant has no pid yet: treat it as held.
  return { holder: { pid: Number.isInteger(pid) && pid > 0 ? pid : undefined, content: content ?? "" } };
}

const readLock = (path: string) =>
  readFile(path, { encoding: "utf8", flag: constants.O_RDONLY | constants.O_NOFOLLOW }).catch(() => undefined);

/** Move the stale file aside atomically; if a live lock slipped in meanwhile, put it back. */
async function breakStale(path: string, stale: Holder): Promise<void> {
  const aside = `${path}.stale.${process.pid}`;
  try {
    await rename(path, aside);
  } catch {
    return;
  }
  if ((await readLock(aside)) !== stale.content) await link(aside, path).catch(() => undefined);
  await unlink(aside).catch(() => undefined);
}

async function release(path: string, own: string, log: Logger): Promise<void> {
  // Say so first: the next holder logs "acquired" the moment the file is gone.
  log.info(`released lock ${path}`);
  if ((await readLock(path)) === own) await unlink(path).catch(() => undefined);
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === "EPERM";
  }
}
