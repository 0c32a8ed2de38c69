// The cache's age rules (an injected clock, no waiting): max age, the reuse window, the future.
import { describe, expect, it } from "vitest";
import { humanAge, judgeAge, withinReuse } from "../../helper/src/cache/age.js";

const t0 = Date.UTC(2026, 11, 1, 12, 0, 0);
const week = 604800;

describe("cache age", () => {
  it("is usable from 0 up to and including the maximum age", () => {
    expect(judgeAge(t0, t0, week)).toEqual({ usable: true, ageMs: 0 });
    expect(judgeAge(t0, t0 + 3 * 3600_000, week)).toEqual({ usable: true, ageMs: 3 * 3600_000 });
    expect(judgeAge(t0, t0 + week * 1000, week)).toEqual({ usable: true, ageMs: week * 1000 });
  });

  it("is refused, and the file is to be removed, once older than the maximum age", () => {
    const v = judgeAge(t0, t0 + week * 1000 + 1, week);
    expect(v).toMatchObject({ usable: false, remove: true });
    expect(!v.usable && v.why).toBe("it is 7 d old, older than the maximum age of 7 d");
    expect(judgeAge(t0, t0 + 61_000, 60)).toMatchObject({
      usable: false,
      remove: true,
      why: "it is 1 min 1 s old, older than the maximum age of 1 min",
    });
  });

  it("a storedAt no Date can hold is refused and removed, not thrown on", () => {
    for (const storedAt of [1e300, 8.64e15 + 1, Number.NaN, Infinity]) {
      expect(() => judgeAge(storedAt, t0, week)).not.toThrow();
      expect(judgeAge(storedAt, t0, week)).toEqual({ usable: false, remove: true, why: "it has no valid time of storage" });
    }
  });

  it("is refused but kept when stored in the future (the clock may be what is wrong)", () => {
    const v = judgeAge(t0 + 90_000, t0, week);
    expect(v).toMatchObject({ usable: false, remove: false });
    expect(!v.usable && v.why).toMatch(/^it was stored 1 min 30 s in the future \(2026-12-01T12:01:30\.000Z; is the clock right\?\)$/);
    expect(judgeAge(t0 + 1, t0, week).usable).toBe(false);
    expect(judgeAge(Number.NaN, t0, week).usable).toBe(false);
  });

  it("reuses only within the window after a fresh resolve, never with a window of 0 or from the future", () => {
    expect(withinReuse(t0, t0 + 59_999, 60)).toBe(true);
    expect(withinReuse(t0, t0, 60)).toBe(true);
    expect(withinReuse(t0, t0 + 60_000, 60)).toBe(false);
    expect(withinReuse(t0, t0, 0)).toBe(false);
    expect(withinReuse(t0 + 1000, t0, 60)).toBe(false);
  });

  it("says an age in its two largest units", () => {
    expect(humanAge(0)).toBe("0 s");
    expect(humanAge(45_900)).toBe("45 s");
    expect(humanAge(12 * 60_000)).toBe("12 min");
    expect(humanAge((3 * 3600 + 12 * 60 + 5) * 1000)).toBe("3 h 12 min");
    expect(humanAge((2 * 86400 + 4 * 3600 + 59) * 1000)).toBe("2 d 4 h");
    expect(humanAge(-5)).toBe("0 s");
  });
});
