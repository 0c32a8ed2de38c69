import { constants } from "node:fs";
import { mkdir, open, readFile, unlink } from "node:fs/promises";
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
}

export const defaultLockPath = "/run/homelab-secrets/fetch.lock";

/**
 * A host-wide lock file holding the owner's pid, created with O_EXCL. A lock whose owner
 * no longer exists (killed with SIGKILL) is taken over. Waits up to 5 minutes, polling
 * every second, saying so every 5 seconds, and gives up at once on the abort signal.
 */
export async function acquireLock(path: string, options: LockOptions): Promise<Lock> {
  const { log, signal } = options;
  const timeoutMs = options.timeoutMs ?? 300_000;
  const pollMs = options.pollMs ?? 1000;
  const reportMs = options.reportMs ?? 5000;
  await mkdir(dirname(path), { recursive: true, mode: 0o755 }).catch(() => undefined);
  const started = performance.now();
  let lastReport = started;
  for (;;) {
    if (signal?.aborted) throw tempFailError(`interrupted while waiting for the lock ${path}`);
    const holder = await tryCreate(path);
    if (holder === undefined) {
      log.info(`acquired lock ${path}`);
      return {
        async release() {
          await unlink(path).catch(() => undefined);
          log.info(`released lock ${path}`);
        },
      };
    }
    if (holder !== null && !isAlive(holder)) {
      log.warn(`taking over lock ${path} from pid ${holder}, which no longer runs`);
      await unlink(path).catch(() => undefined);
      continue;
    }
    const now = performance.now();
    if (now - started >= timeoutMs) {
      throw tempFailError(`gave up waiting ${Math.round(timeoutMs / 1000)}s for the lock ${path} (held by pid ${holder ?? "?"})`);
    }
    if (now - lastReport >= reportMs || lastReport === started) {
      log.info(`waiting for lock ${path} held by pid ${holder ?? "?"}`);
      lastReport = now;
    }
    try {
      await sleep(pollMs, signal);
    } catch {
      throw tempFailError(`interrupted while waiting for the lock ${path}`);
    }
  }
}

/** undefined: we own it now; a number: the holder's pid; null: held, holder unknown. */
async function tryCreate(path: string): Promise<number | null | undefined> {
  try {
    const handle = await open(path, constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | constants.O_NOFOLLOW, 0o644);
    await handle.writeFile(`${process.pid}\n`);
    await handle.close();
    return undefined;
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    if (code !== "EEXIST") throw cantCreateError(`cannot create lock ${path}: ${code ?? "error"}`, error);
  }
  const text = await readFile(path, "utf8").catch(() => "");
  const pid = Number.parseInt(text, 10);
  // A lock being written this instant has no pid yet: treat it as held.
  return Number.isInteger(pid) && pid > 0 ? pid : null;
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === "EPERM";
  }
}
