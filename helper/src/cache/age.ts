/** The age rules of the cache, as pure functions of the stored time and a clock reading (ms since the epoch). */

/** Whether an entry stored at `storedAt` may stand in for a failed fetch at `now`. */
export type AgeVerdict =
  | { readonly usable: true; readonly ageMs: number }
  | {
      readonly usable: false;
      /** Why not, for the log line beside the original error. */
      readonly why: string;
      /** Whether the file should go (too old: it can never be used again). */
      readonly remove: boolean;
    };

/**
 * Usable when 0 <= age <= maxAge. Older: refused and to be removed. Stored in the future
 * (the clock went back, or the file's time is forged): refused but kept, since the clock may
 * be what is wrong.
 */
export function judgeAge(storedAt: number, now: number, maxAgeSeconds: number): AgeVerdict {
  const ageMs = now - storedAt;
  if (!Number.isFinite(storedAt) || Number.isNaN(new Date(storedAt).getTime()))
    return { usable: false, remove: true, why: "it has no valid time of storage" };
  if (ageMs < 0) {
    return {
      usable: false,
      remove: false,
      why: `it was stored ${humanAge(-ageMs)} in the future (${new Date(storedAt).toISOString()}; is the clock right?)`,
    };
  }
  if (ageMs > maxAgeSeconds * 1000) {
    return {
      usable: false,
      remove: true,
      why: `it is ${humanAge(ageMs)} old, older than the maximum age of ${humanAge(maxAgeSeconds * 1000)}`,
    };
  }
  return { usable: true, ageMs };
}

/** Whether a start at `now` is within `reuseSeconds` of the fresh resolve at `storedAt` (restart loops). */
export function withinReuse(storedAt: number, now: number, reuseSeconds: number): boolean {
  const ageMs = now - storedAt;
  return reuseSeconds > 0 && ageMs >= 0 && ageMs < reuseSeconds * 1000;
}

/** "45 s", "12 min", "3 h 12 min", "2 d 4 h": the two largest units, rounded down. */
export function humanAge(ms: number): string {
  const s = Math.max(0, Math.floor(ms / 1000));
  const units: [number, string][] = [
    [86400, "d"],
    [3600, "h"],
    [60, "min"],
    [1, "s"],
  ];
  const first = units.findIndex(([size]) => s >= size);
  if (first === -1) return "0 s";
  const [big, bigName] = units[first]!;
  const parts = [`${Math.floor(s / big)} ${bigName}`];
  const next = units[first + 1];
  if (next && Math.floor((s % big) / next[0]) > 0) parts.push(`${Math.floor((s % big) / next[0])} ${next[1]}`);
  return parts.join(" ");
}
