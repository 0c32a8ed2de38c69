import { describe, expect, it } from "vitest";
import { HomelabError } from "../../helper/src/errors.js";
import { silentLogger } from "../../helper/src/log.js";
import { parseReference } from "../../helper/src/reference.js";
import { resolveReferences } from "../../helper/src/resolve.js";
import { totp } from "../../helper/src/totp.js";
import type { Source } from "../../helper/src/sources/source.js";

describe("resolveReferences", () => {
  it("refuses a backend value that is not a string (65), naming the reference, never the value", async () => {
    const refs = ["op://V/I/number", "op://V/I/list", "op://V/I/ok"].map((r) => parseReference(r));
    const source: Source = {
      name: "fake",
      // What a hostile or broken Connect server can put in an item's JSON "value".
      resolveAll: () =>
        Promise.resolve(
          new Map<string, string>([
            ["op://V/I/number", 424242 as unknown as string],
            ["op://V/I/list", ["list-secret-a", "list-secret-b"] as unknown as string],
            ["op://V/I/ok", "fine"],
          ]),
        ),
    };
    const error = await resolveReferences(source, refs, { deadlineSeconds: 5, log: silentLogger }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(HomelabError);
    expect((error as HomelabError).exitCode).toBe(65);
    expect((error as HomelabError).message).toBe("fake returned something other than text for op://V/I/number, op://V/I/list");
    expect((error as HomelabError).message).not.toMatch(/424242|list-secret/);
  });
});

describe("totp", () => {
  it("an otpauth:// URI that does not parse is bad data (65), not an internal error, and the secret stays out", () => {
    let error: unknown;
    try {
      totp("otpauth://[broken/x?secret=JBSWY3DPEHPK3PXP", Date.now(), "op://V/I/f?attribute=otp");
    } catch (e) {
      error = e;
    }
    expect(error).toBeInstanceOf(HomelabError);
    expect((error as HomelabError).exitCode).toBe(65);
    expect((error as HomelabError).message).toBe("op://V/I/f?attribute=otp: the field is not a usable one-time-password secret");
    expect(totp("JBSWY3DPEHPK3PXP", 59_000, "x")).toMatch(/^\d{6}$/);
  });
});
