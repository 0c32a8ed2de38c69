// The decrypted cache entry is data like any backend answer: checked field by field, and an
// error names the field, never a value.
import { describe, expect, it } from "vitest";
import { parseEntry } from "../../helper/src/cache/store.js";

const good = { version: 1, specKey: "ab".repeat(32), storedAt: 1_700_000_000_000, values: { "op://V/i/f": "s3cret-value" } };

describe("cache entry", () => {
  it("reads back what the store writes", () => {
    expect(parseEntry(JSON.stringify(good))).toEqual(good);
  });

  it.each([
    ["not JSON", "s3cret-value", "decrypted content is not JSON"],
    ["not an object", "null", "decrypted content is not an object"],
    ["another version", JSON.stringify({ ...good, version: 2 }), "unknown cache version"],
    ["no key", JSON.stringify({ ...good, specKey: 1 }), "no specKey"],
    ["no time", JSON.stringify({ ...good, storedAt: "yesterday" }), "no storedAt"],
    ["a time no Date can hold", JSON.stringify({ ...good, storedAt: 1e300 }), "no storedAt"],
    ["a time past year 275760", JSON.stringify({ ...good, storedAt: 8.64e15 + 1 }), "no storedAt"],
    ["a time before 1970", JSON.stringify({ ...good, storedAt: -1 }), "no storedAt"],
    ["a fractional time", JSON.stringify({ ...good, storedAt: 1_700_000_000_000.5 }), "no storedAt"],
    ["values a list", JSON.stringify({ ...good, values: ["s3cret-value"] }), "no values"],
    [
      "a value not text",
      JSON.stringify({ ...good, values: { "op://V/i/f": 42, "op://V/i/g": "s3cret-value" } }),
      "value of op://V/i/f is not text",
    ],
  ])("refuses %s, naming no value", (_, text, message) => {
    expect(() => parseEntry(text)).toThrow(message);
    try {
      parseEntry(text);
    } catch (error) {
      expect((error as Error).message).not.toContain("s3cret");
    }
  });
});
