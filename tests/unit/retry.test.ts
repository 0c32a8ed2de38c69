import { afterEach, describe, expect, it, vi } from "vitest";
import {
  ExitCode,
  configError,
  dataError,
  HomelabError,
  notFoundError,
  permissionError,
  tempFailError,
  type ExitCodeValue,
} from "../../helper/src/errors.js";
import { createLogger } from "../../helper/src/log.js";
import { createDeadline, raceSignal, sleep, withRetry } from "../../helper/src/retry.js";

function capture() {
  const lines: string[] = [];
  return { lines, log: createLogger({ journal: false, verbose: true, write: (line) => lines.push(line) }) };
}

const fast = { minTimeoutMs: 5, maxTimeoutMs: 20 } as const;

/**
 * Fake setTimeout for tests about waiting: time moves only when the test says so. Real
 * setImmediate stays, so `settled` can let pending I/O (p-retry's dynamic import) finish.
 */
const fakeTime = () => vi.useFakeTimers({ toFake: ["setTimeout", "clearTimeout"] });
afterEach(() => {
  vi.useRealTimers();
});
/** Let real I/O and microtasks run (a few event-loop turns) until `done()` holds. */
async function settled(done: () => boolean): Promise<void> {
  for (let i = 0; i < 1000 && !done(); i++) await new Promise<void>((resolve) => setImmediate(resolve));
  expect(done()).toBe(true);
}
const never = () => new AbortController().signal;

async function rejectionOf(promise: Promise<unknown>): Promise<HomelabError> {
  try {
    await promise;
  } catch (error) {
    expect(error).toBeInstanceOf(HomelabError);
    return error as HomelabError;
  }
  throw new Error("resolved");
}

describe("withRetry", () => {
  it("retries transient (75) failures and returns the first success, counting attempts", async () => {
    const { lines, log } = capture();
    const attempts: number[] = [];
    const result = await withRetry(
      "backend",
      (attempt) => {
        attempts.push(attempt);
        if (attempts.length < 3) throw tempFailError(`flaky ${attempts.length}`);
        return Promise.resolve("value");
      },
      { signal: never(), log, retries: 4, ...fast },
    );
    expect(result).toBe("value");
    expect(attempts).toEqual([1, 2, 3]);
    const warnings = lines.filter((l) => l.includes("retrying"));
    expect(warnings).toEqual([
      "homelab-secrets: warn: backend: attempt 1 failed (flaky 1); retrying\n",
      "homelab-secrets: warn: backend: attempt 2 failed (flaky 2); retrying\n",
    ]);
  });

  it.each([0, 1, 3])("gives up after 1 + %i retries with the last transient error", async (retries) => {
    let calls = 0;
    const error = await rejectionOf(
      withRetry(
        "backend",
        () => {
          calls++;
          throw tempFailError(`down (call ${calls})`);
        },
        { signal: never(), log: capture().log, retries, ...fast },
      ),
    );
    expect(calls).toBe(retries + 1);
    expect(error.exitCode).toBe(75);
    expect(error.message).toBe(`down (call ${retries + 1})`);
  });

  it.each([
    [ExitCode.usage, (m: string) => new HomelabError(ExitCode.usage, m)],
    [ExitCode.dataErr, dataError],
    [ExitCode.notFound, notFoundError],
    [ExitCode.cantCreate, (m: string) => new HomelabError(ExitCode.cantCreate, m)],
    [ExitCode.noPerm, permissionError],
    [ExitCode.config, configError],
  ] as Array<[ExitCodeValue, (m: string) => HomelabError]>)(
    "fails at once on a permanent %i error, after exactly 1 attempt",
    async (code, make) => {
      const { lines, log } = capture();
      let calls = 0;
      const thrown = make("permanent problem");
      const error = await rejectionOf(
        withRetry(
          "backend",
          () => {
            calls++;
            throw thrown;
          },
          { signal: never(), log, retries: 5, minTimeoutMs: 1000 },
        ),
      );
      expect(calls).toBe(1);
      expect(error).toBe(thrown);
      expect(error.exitCode).toBe(code);
      expect(lines.filter((l) => l.includes("retrying"))).toEqual([]);
    },
  );

  it("does not retry errors that are not HomelabErrors (bugs)", async () => {
    let calls = 0;
    await expect(
      withRetry(
        "backend",
        () => {
          calls++;
          throw new TypeError("boom");
        },
        { signal: never(), log: capture().log, retries: 3, ...fast },
      ),
    ).rejects.toThrow(TypeError);
    expect(calls).toBe(1);
  });

  it("honours Retry-After: the next attempt waits at least as long as asked", async () => {
    fakeTime();
    const { lines, log } = capture();
    let calls = 0;
    const result = withRetry(
      "backend",
      () => {
        calls++;
        if (calls === 1) throw tempFailError("rate limited", { retryAfterMs: 400 });
        return Promise.resolve(1);
      },
      { signal: never(), log, retries: 2, ...fast },
    );
    await settled(() => lines.some((l) => l.includes("asked to wait")));
    await vi.advanceTimersByTimeAsync(399);
    expect(calls).toBe(1);
    // 400 ms asked, then p-retry's own backoff (at most maxTimeoutMs).
    await vi.advanceTimersByTimeAsync(1 + fast.maxTimeoutMs);
    await expect(result).resolves.toBe(1);
    expect(calls).toBe(2);
    expect(lines).toContain("homelab-secrets: backend: backend asked to wait 1s before retrying\n");
  });

  it("the deadline aborts a Retry-After wait with a 75 error naming the deadline", async () => {
    fakeTime();
    const deadline = createDeadline(0.3);
    let calls = 0;
    let outcome: HomelabError | undefined;
    const { lines, log } = capture();
    const pending = rejectionOf(
      withRetry(
        "backend",
        () => {
          calls++;
          throw tempFailError("rate limited", { retryAfterMs: 10_000 });
        },
        { signal: deadline.signal, log, retries: 5, ...fast },
      ),
    ).then((error) => (outcome = error));
    await settled(() => lines.some((l) => l.includes("asked to wait")));
    await vi.advanceTimersByTimeAsync(299);
    expect(outcome).toBeUndefined();
    await vi.advanceTimersByTimeAsync(1);
    const error = await pending;
    deadline.dispose();
    expect(calls).toBe(1);
    expect(error.exitCode).toBe(75);
    // The operator learns both why it stopped and what the backend last said.
    expect(error.message).toBe("deadline of 0.3s passed before all references resolved; last failure: rate limited");
  });

  it("the deadline aborts p-retry's own backoff too", async () => {
    fakeTime();
    const deadline = createDeadline(0.25);
    let calls = 0;
    let outcome: HomelabError | undefined;
    const pending = rejectionOf(
      withRetry(
        "backend",
        () => {
          calls++;
          throw tempFailError("connection refused");
        },
        { signal: deadline.signal, log: capture().log, retries: 5, minTimeoutMs: 5000, maxTimeoutMs: 5000 },
      ),
    ).then((error) => (outcome = error));
    await settled(() => calls === 1);
    await vi.advanceTimersByTimeAsync(249);
    expect(outcome).toBeUndefined();
    // At the deadline, not after p-retry's 5 s backoff.
    await vi.advanceTimersByTimeAsync(1);
    const error = await pending;
    deadline.dispose();
    expect(calls).toBe(1);
    expect(error.exitCode).toBe(75);
    expect(error.message).toMatch(/deadline of 0\.25s passed/);
  });

  it("a permanent error wins over an abort that happens at the same time", async () => {
    const controller = new AbortController();
    const error = await rejectionOf(
      withRetry(
        "backend",
        () => {
          controller.abort(tempFailError("deadline"));
          throw permissionError("bad token");
        },
        { signal: controller.signal, log: capture().log, ...fast },
      ),
    );
    expect(error.exitCode).toBe(77);
    expect(error.message).toBe("bad token");
  });

  it("does not start when the signal is already aborted", async () => {
    const controller = new AbortController();
    controller.abort(tempFailError("stopped by SIGTERM"));
    let calls = 0;
    const error = await rejectionOf(
      withRetry(
        "backend",
        () => {
          calls++;
          return Promise.resolve(1);
        },
        { signal: controller.signal, log: capture().log, ...fast },
      ),
    );
    expect(calls).toBe(0);
    expect(error.exitCode).toBe(75);
    expect(error.message).toBe("stopped by SIGTERM");
  });
});

describe("createDeadline", () => {
  it("aborts after the given time with a 75 error", () => {
    fakeTime();
    const deadline = createDeadline(0.2);
    expect(deadline.seconds).toBe(0.2);
    vi.advanceTimersByTime(199);
    expect(deadline.signal.aborted).toBe(false);
    vi.advanceTimersByTime(1);
    expect(deadline.signal.aborted).toBe(true);
    expect(deadline.signal.reason).toBeInstanceOf(HomelabError);
    expect((deadline.signal.reason as HomelabError).exitCode).toBe(75);
    expect((deadline.signal.reason as HomelabError).message).toMatch(/deadline of 0\.2s/);
  });

  it("does not abort once disposed", () => {
    fakeTime();
    const deadline = createDeadline(0.05);
    deadline.dispose();
    vi.advanceTimersByTime(150);
    expect(deadline.signal.aborted).toBe(false);
  });

  it("passes a parent's abort (SIGTERM) through with the parent's reason", () => {
    const parent = new AbortController();
    const deadline = createDeadline(60, parent.signal);
    const reason = tempFailError("stopped by SIGTERM");
    parent.abort(reason);
    expect(deadline.signal.aborted).toBe(true);
    expect(deadline.signal.reason).toBe(reason);
    deadline.dispose();
  });

  it("stops listening to the parent once disposed", () => {
    const parent = new AbortController();
    const deadline = createDeadline(60, parent.signal);
    deadline.dispose();
    parent.abort(tempFailError("late"));
    expect(deadline.signal.aborted).toBe(false);
  });
});

describe("raceSignal", () => {
  it("settles with the promise when it wins", async () => {
    const controller = new AbortController();
    await expect(raceSignal(Promise.resolve("v"), controller.signal)).resolves.toBe("v");
    const error = permissionError("no");
    await expect(raceSignal(Promise.reject(error), controller.signal)).rejects.toBe(error);
  });

  it("rejects with the signal's reason as soon as it aborts, even if the promise never settles", async () => {
    fakeTime();
    const deadline = createDeadline(0.1);
    let outcome: HomelabError | undefined;
    const pending = rejectionOf(raceSignal(new Promise<never>(() => undefined), deadline.signal)).then((error) => (outcome = error));
    await vi.advanceTimersByTimeAsync(99);
    expect(outcome).toBeUndefined();
    await vi.advanceTimersByTimeAsync(1);
    const error = await pending;
    expect(error.exitCode).toBe(75);
    expect(error.message).toMatch(/deadline of 0\.1s/);
    deadline.dispose();
  });

  it("rejects at once when already aborted; a foreign reason becomes a 75 error", async () => {
    const controller = new AbortController();
    controller.abort(new Error("not ours"));
    const error = await rejectionOf(raceSignal(Promise.resolve(1), controller.signal));
    expect(error.exitCode).toBe(75);
    expect(error.message).toBe("operation aborted");
  });
});

describe("sleep", () => {
  it("waits, and rejects with the abort reason when aborted", async () => {
    fakeTime();
    let woke = false;
    const nap = sleep(50).then(() => (woke = true));
    await vi.advanceTimersByTimeAsync(49);
    expect(woke).toBe(false);
    await vi.advanceTimersByTimeAsync(1);
    await nap;
    expect(woke).toBe(true);
    const controller = new AbortController();
    setTimeout(() => controller.abort(tempFailError("stop")), 20);
    const pending = rejectionOf(sleep(10_000, controller.signal));
    await vi.advanceTimersByTimeAsync(20);
    const error = await pending;
    expect(error.message).toBe("stop");
  });
});
