import { describe, expect, it } from "vitest";
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
import { classifySdkError } from "../../helper/src/sources/onepassword.js";

function capture() {
  const lines: string[] = [];
  return { lines, log: createLogger({ journal: false, verbose: true, write: (line) => lines.push(line) }) };
}

const fast = { minTimeoutMs: 5, maxTimeoutMs: 20 } as const;
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
  ] as Array<[ExitCodeValue, (m: string) => HomelabError]>)("fails at once on a permanent %i error, after exactly 1 attempt", async (code, make) => {
    const { lines, log } = capture();
    let calls = 0;
    const thrown = make("permanent problem");
    const started = performance.now();
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
    expect(performance.now() - started).toBeLessThan(500);
    expect(lines.filter((l) => l.includes("retrying"))).toEqual([]);
  });

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
    const { lines, log } = capture();
    const times: number[] = [];
    await withRetry(
      "backend",
      () => {
        times.push(performance.now());
        if (times.length === 1) throw tempFailError("rate limited", { retryAfterMs: 400 });
        return Promise.resolve(1);
      },
      { signal: never(), log, retries: 2, ...fast },
    );
    expect(times).toHaveLength(2);
    const waited = times[1]! - times[0]!;
    expect(waited).toBeGreaterThanOrEqual(399);
    expect(waited).toBeLessThan(2000);
    expect(lines).toContain("homelab-secrets: backend: backend asked to wait 1s before retrying\n");
  });

  it("the deadline aborts a Retry-After wait with a 75 error naming the deadline", async () => {
    const deadline = createDeadline(0.3);
    let calls = 0;
    const started = performance.now();
    const error = await rejectionOf(
      withRetry(
        "backend",
        () => {
          calls++;
          throw tempFailError("rate limited", { retryAfterMs: 10_000 });
        },
        { signal: deadline.signal, log: capture().log, retries: 5, ...fast },
      ),
    );
    const elapsed = performance.now() - started;
    deadline.dispose();
    expect(calls).toBe(1);
    expect(error.exitCode).toBe(75);
    // The operator learns both why it stopped and what the backend last said.
    expect(error.message).toBe("deadline of 0.3s passed before all references resolved; last failure: rate limited");
    expect(elapsed).toBeGreaterThanOrEqual(295);
    expect(elapsed).toBeLessThan(2000);
  });

  it("the deadline aborts p-retry's own backoff too", async () => {
    const deadline = createDeadline(0.25);
    let calls = 0;
    const started = performance.now();
    const error = await rejectionOf(
      withRetry(
        "backend",
        () => {
          calls++;
          throw tempFailError("connection refused");
        },
        { signal: deadline.signal, log: capture().log, retries: 5, minTimeoutMs: 5000, maxTimeoutMs: 5000 },
      ),
    );
    deadline.dispose();
    expect(calls).toBe(1);
    expect(error.exitCode).toBe(75);
    expect(error.message).toMatch(/deadline of 0\.25s passed/);
    expect(performance.now() - started).toBeLessThan(2000);
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
  it("aborts after the given time with a 75 error", async () => {
    const started = performance.now();
    const deadline = createDeadline(0.2);
    expect(deadline.seconds).toBe(0.2);
    expect(deadline.signal.aborted).toBe(false);
    await new Promise<void>((resolve) => deadline.signal.addEventListener("abort", () => resolve(), { once: true }));
    expect(performance.now() - started).toBeGreaterThanOrEqual(195);
    expect(deadline.signal.reason).toBeInstanceOf(HomelabError);
    expect((deadline.signal.reason as HomelabError).exitCode).toBe(75);
    expect((deadline.signal.reason as HomelabError).message).toMatch(/deadline of 0\.2s/);
  });

  it("does not abort once disposed", async () => {
    const deadline = createDeadline(0.05);
    deadline.dispose();
    await sleep(150);
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
    const deadline = createDeadline(0.1);
    const started = performance.now();
    const error = await rejectionOf(raceSignal(new Promise<never>(() => undefined), deadline.signal));
    expect(error.exitCode).toBe(75);
    expect(error.message).toMatch(/deadline of 0\.1s/);
    expect(performance.now() - started).toBeLessThan(1000);
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
    const started = performance.now();
    await sleep(50);
    expect(performance.now() - started).toBeGreaterThanOrEqual(49);
    const controller = new AbortController();
    setTimeout(() => controller.abort(tempFailError("stop")), 20);
    const error = await rejectionOf(sleep(10_000, controller.signal));
    expect(error.message).toBe("stop");
  });
});

describe("classifySdkError", () => {
  const token = "ops_eyJzaWduSW5BZGRyZXNzIjoibXkuMXBhc3N3b3JkLmNvbSJ9SECRETTOKENTEXT";

  it.each([
    [
      "malformed token (observed from sdk 0.5.0)",
      "invalid service account token, please make sure you provide a valid service account token as parameter:  service account deserialization failed, please create another token",
      77,
    ],
    [
      "no network (observed from sdk 0.5.0)",
      "authentication error: request library compatibility issue, check that the your environment uses compatible versions: reqwest library: error sending request",
      75,
    ],
    ["authentication error without a network cause", "authentication error: invalid credentials", 77],
    ["unauthorized", "Unauthorized: the token was revoked", 77],
    ["forbidden", "Forbidden (403)", 77],
    ["timeout", "operation timed out", 75],
    ["connection reset", "connection reset by peer", 75],
    ["server error", "server responded with 503", 75],
    ["dns", "dns error: failed to lookup address information", 75],
    ["something unknown", "unexpected thing happened", 75],
  ])("%s → %i", (_what, message, code) => {
    const error = classifySdkError(new Error(message), token);
    expect(error).toBeInstanceOf(HomelabError);
    expect(error.exitCode).toBe(code);
    expect(error.message).toContain(message.slice(0, 40));
  });

  it.each(["Rate limit exceeded", "too many requests: rate limit reached for this account"])(
    "rate limits (%j) are transient and ask to wait",
    (message) => {
      const error = classifySdkError(new Error(message), token);
      expect(error.exitCode).toBe(75);
      expect(error.retryAfterMs).toBeGreaterThanOrEqual(10_000);
      expect(error.message).toMatch(/rate limit/i);
    },
  );

  it("uses the SDK's own error classes when given them", async () => {
    const sdk = await import("@1password/sdk");
    const limited = classifySdkError(new sdk.RateLimitExceededError("slow down"), token, sdk);
    expect(limited.exitCode).toBe(75);
    expect(limited.retryAfterMs).toBeGreaterThan(0);
    const expired = classifySdkError(new sdk.AuthExpiredError("session over"), token, sdk);
    expect(expired.exitCode).toBe(77);
    expect(expired.message).toMatch(/expired/);
  });

  it("handles the raw JSON strings the SDK sometimes throws", () => {
    const raw = '{"name":"Other","message":"invalid service account token"}';
    const error = classifySdkError(raw, token);
    expect(error.exitCode).toBe(77);
    expect(error.message).toContain(raw);
  });

  it("keeps the token out of every message", () => {
    for (const text of [`invalid service account token ${token}`, `error sending request with ${token} to host`, `weird ${token}${token}`]) {
      const error = classifySdkError(new Error(text), token);
      expect(error.message).not.toContain(token);
      expect(error.message).not.toContain("SECRETTOKENTEXT");
      expect(error.message).toContain("[token]");
    }
  });

  it("bounds the length of what it passes on", () => {
    const error = classifySdkError(new Error(`error sending request ${"x".repeat(5000)}`), token);
    expect(error.message.length).toBeLessThan(400);
  });

  it("passes HomelabErrors through unchanged", () => {
    const original = notFoundError("not found");
    expect(classifySdkError(original, token)).toBe(original);
  });
});
