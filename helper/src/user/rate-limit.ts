/**
 * A per-user limit on how often the wrapper may spend the shared token's quota (1Password
 * counts reads per token per hour, for every user of the host together). Enforced in the
 * fetcher, as the service account, in state the caller can neither read nor change: one
 * file per caller uid in the service account's own 0700 directory, updated under a lock
 * file so concurrent runs of one user are counted one after the other.
 */
import { constants } from "node:fs";
import { open, readFile, rename, stat } from "node:fs/promises";
import { join } from "node:path";
import { configError, tempFailError } from "../errors.js";
import { acquireLock } from "../lock.js";
import type { Logger } from "../log.js";

export interface RateLimit {
  /** At most this many fetches per caller ... */
  readonly runs: number;
  /** ... in any window of this many seconds. */
  readonly perSeconds: number;
}

/** Used when config.json says nothing: a login burst passes, a loop is slowed to 60 runs/h. */
export const defaultRateLimit: RateLimit = { runs: 10, perSeconds: 600 };

/**
 * Count one fetch for `uid` now, or refuse (75) when the window is full. A missing state
 * directory disables the limit with a warning (doctor reports it); an unsafe one is 78.
 */
export async function countFetch(stateDir: string, uid: number, limit: RateLimit, log: Logger, nowMs = Date.now()): Promise<void> {
  let dirStats;
  try {
    dirStats = await stat(stateDir);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === "ENOENT") {
      log.warn(`per-user rate limit not enforced: ${stateDir} does not exist (create it 0700, owned by the service account)`);
      return;
    }
    throw configError(`cannot use the rate-limit state ${stateDir}: ${(error as NodeJS.ErrnoException).code ?? "error"}`);
  }
  if (!dirStats.isDirectory() || dirStats.uid !== process.getuid!() || (dirStats.mode & 0o077) !== 0) {
    throw configError(`unsafe rate-limit state ${stateDir}: must be a directory owned by the service account, mode 0700`);
  }
  const file = join(stateDir, String(uid));
  const lock = await acquireLock(`${file}.lock`, { log: quiet(log), timeoutMs: 10_000, pollMs: 20 });
  try {
    const windowStart = nowMs - limit.perSeconds * 1000;
    const recent = parseTimes(
      await readFile(file, { encoding: "utf8", flag: constants.O_RDONLY | constants.O_NOFOLLOW }).catch(() => ""),
    ).filter((t) => t > windowStart && t <= nowMs);
    if (recent.length >= limit.runs) {
      const waitS = Math.max(1, Math.ceil((recent[recent.length - limit.runs]! - windowStart) / 1000));
      throw tempFailError(
        `rate limit: ${recent.length} fetches in the last ${limit.perSeconds} s (at most ${limit.runs}, config.json userRateLimit); ` +
          `try again in ${waitS} s; nothing written`,
      );
    }
    recent.push(nowMs);
    const temp = `${file}.${process.pid}.tmp`;
    const handle = await open(temp, constants.O_WRONLY | constants.O_CREAT | constants.O_TRUNC | constants.O_NOFOLLOW, 0o600);
    try {
      await handle.writeFile(`${recent.join("\n")}\n`);
    } finally {
      await handle.close();
    }
    await rename(temp, file);
  } finally {
    await lock.release();
  }
}

function parseTimes(text: string): number[] {
  return text
    .split("\n")
    .map((line) => Number(line))
    .filter((t) => Number.isInteger(t) && t > 0)
    .sort((a, b) => a - b);
}

/** The state lock's own chatter ("acquired lock …") is not worth the caller's attention. */
function quiet(log: Logger): Logger {
  return { error: (m) => log.error(m), warn: (m) => log.warn(m), info: () => undefined, debug: (m) => log.debug(m) };
}
