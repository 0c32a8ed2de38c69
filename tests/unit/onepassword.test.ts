// How the 1Password SDK's errors map to exit classes and messages (never the token).
import { describe, expect, it } from "vitest";
import { cacheMayStandIn, HomelabError, notFoundError } from "../../helper/src/errors.js";
import { resolveReferences } from "../../helper/src/resolve.js";
import { parseReference } from "../../helper/src/reference.js";
import { silentLogger } from "../../helper/src/log.js";
import { classifySdkError } from "../../helper/src/sources/onepassword.js";

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

  it("only recognised transient errors let sealed values stand in; an unknown one is retried (75) but never cached over", async () => {
    const stand = (message: string) => cacheMayStandIn(classifySdkError(new Error(message), token));
    expect(stand("operation timed out")).toBe(true);
    expect(stand("authentication error: … reqwest library: error sending request")).toBe(true);
    expect(stand("Rate limit exceeded")).toBe(true);
    expect(stand("service account is deactivated")).toBe(false);
    expect(stand("Unauthorized: the token was revoked")).toBe(false);
    // resolveReferences names the references in a new error: the mark survives it.
    const failing = { name: "sdk", resolveAll: () => Promise.reject(classifySdkError(new Error("service account is deactivated"), token)) };
    const error = await resolveReferences(failing, [parseReference("op://V/i/f", "test")], { deadlineSeconds: 5, log: silentLogger }).catch(
      (e: unknown) => e,
    );
    expect(error).toMatchObject({ exitCode: 75, unrecognised: true });
    expect(cacheMayStandIn(error)).toBe(false);
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
    for (const text of [
      `invalid service account token ${token}`,
      `error sending request with ${token} to host`,
      `weird ${token}${token}`,
    ]) {
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
