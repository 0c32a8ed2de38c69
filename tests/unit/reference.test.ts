/**
 * The helper's reference parser against the real @1password/sdk offline validator.
 * `Secrets.validateSecretReference` runs in the SDK's WASM core, needs no network, and
 * throws a raw JSON string (not an Error) on failure.
 */
import { beforeAll, describe, expect, it } from "vitest";
import { HomelabError } from "../../helper/src/errors.js";
import { parseReference, uniqueReferences } from "../../helper/src/reference.js";

let validate: (ref: string) => void;
beforeAll(async () => {
  const sdk = await import("@1password/sdk");
  validate = (ref) => sdk.Secrets.validateSecretReference(ref);
});

function sdkAccepts(ref: string): boolean {
  try {
    validate(ref);
    return true;
  } catch (thrown) {
    // The SDK throws a JSON string; make sure it is a parsing verdict, not some other failure.
    const parsed = JSON.parse(String(thrown)) as { name?: string };
    expect(parsed.name).toBe("ParsingSecretReference");
    return false;
  }
}

function helperAccepts(ref: string): boolean {
  try {
    parseReference(ref);
    return true;
  } catch (error) {
    expect(error).toBeInstanceOf(HomelabError);
    expect((error as HomelabError).exitCode).toBe(65);
    return false;
  }
}

/** [reference, what it is]; the expected verdict is the SDK's, asked at test time. */
const table: Array<[string, string]> = [
  // valid shapes
  ["op://vault/item/field", "3 segments"],
  ["op://vault/item/section/field", "4 segments"],
  ["op://My Vault/My Item/My Field", "spaces inside names"],
  ["op://Home Lab/Web Server/Admin Login/pass word", "spaces in all 4 segments"],
  ["op://v/i/f?attribute=otp", "attribute=otp"],
  ["op://v/i/f?attribute=totp", "attribute=totp"],
  ["op://v/i/s/f?attribute=totp", "4 segments with attribute"],
  ["op://v/i/key?ssh-format=openssh", "ssh-format=openssh"],
  ["op://v/i/s/key?ssh-format=openssh", "4 segments with ssh-format"],
  ["op://v.1/i.tem/f.i.e.l.d", "dots"],
  ["op://my-vault/my-item/api-key", "dashes"],
  ["op://my_vault/my_item/api_key", "underscores"],
  ["op://V4ult/1tem/F13ld", "digits and mixed case"],
  ["op://-/_/.", "names that are only punctuation the SDK allows"],
  ["op://../i/f", "a '..' vault name (just a name, never a path)"],
  ["op://" + "v".repeat(200) + "/i/f", "a long name"],
  // wrong shape
  ["op://vault", "1 segment"],
  ["op://vault/item", "2 segments"],
  ["op://v/i/s/t/f", "5 segments"],
  ["OP://v/i/f", "upper-case scheme"],
  ["op:/v/i/f", "one slash"],
  ["op:v/i/f", "no slashes"],
  ["v/i/f", "no scheme"],
  ["https://v/i/f", "another scheme"],
  ["", "empty string"],
  ["op://", "scheme only"],
  [" op://v/i/f", "leading space before the scheme"],
  // characters the SDK refuses in names
  ["op://v/i%20x/f", "%"],
  ["op://v/i$x/f", "$"],
  ["op://v/i:x/f", ":"],
  ["op://v/i@x/f", "@"],
  ["op://v/i+x/f", "+"],
  ["op://v/i'x/f", "'"],
  ["op://v/i,x/f", ","],
  ["op://v/i~x/f", "~"],
  ["op://v/i=x/f", "="],
  ["op://v/i#x/f", "#"],
  ["op://v/i(x)/f", "("],
  ['op://v/i"x/f', '"'],
  ["op://v/i\\x/f", "backslash"],
  ["op://v/i&x/f", "&"],
  ["op://v/i*x/f", "*"],
  ["op://v/i;x/f", ";"],
  ["op://v/i!x/f", "!"],
  ["op://v/i`x/f", "backtick"],
  ["op://v/i{x}/f", "{"],
  ["op://v/i\tx/f", "tab"],
  ["op://v/i\nx/f", "newline"],
  ["op://v/i/f\n", "trailing newline"],
  ["op://vault/itém/f", "non-ASCII letter"],
  ["op://vault/日本/f", "CJK"],
  ["op://vault/i😀/f", "emoji"],
  ["op://vault/i\u00a0x/f", "no-break space"],
  ["op://vault/e\u0301/f", "combining mark"],
  // queries
  ["op://v/i/f?attribute=otp&ssh-format=openssh", "two query params with &"],
  ["op://v/i/f?attribute=otp?ssh-format=openssh", "two query params with ?"],
  ["op://v/i/f?attribute=type", "other attribute"],
  ["op://v/i/f?attribute=password", "attribute=password"],
  ["op://v/i/f?attribute=OTP", "upper-case attribute value"],
  ["op://v/i/f?attribute=", "empty attribute"],
  ["op://v/i/f?attribute", "attribute without value"],
  ["op://v/i/f?ssh-format=pkcs8", "other ssh-format"],
  ["op://v/i/f?x=y", "unknown query key"],
  ["op://v/i/f?", "empty query"],
  ["op://v/i/f?attribute=otp=x", "two '='"],
  ["op://v/i?attribute=otp/f", "query in the middle"],
];

/**
 * Where the helper is deliberately stricter than the SDK's offline validator: the SDK
 * accepts empty segments and names with leading or trailing spaces, which can never name
 * a real vault, item, section or field (the lookup fails online, after a network round
 * trip and against the rate limit). The helper refuses them at spec-check time. These
 * rows assert that exact disagreement, so a change on either side shows up here.
 */
const helperStricter: Array<[string, string]> = [
  ["op://v//f", "empty item"],
  ["op:///i/f", "empty vault"],
  ["op://v/i//f", "empty section"],
  ["op://v/i/f/", "trailing slash (empty field)"],
  ["op:////", "all empty"],
  ["op:// v/i/f", "leading space in a name"],
  ["op://v/i/f ", "trailing space in a name"],
  ["op://v/i/ ", "a name that is one space"],
];

describe("reference parsing agrees with @1password/sdk's validateSecretReference", () => {
  it("the table covers at least 40 references, both verdicts", () => {
    expect(table.length).toBeGreaterThanOrEqual(40);
    const verdicts = table.map(([ref]) => sdkAccepts(ref));
    expect(verdicts.filter(Boolean).length).toBeGreaterThanOrEqual(12);
    expect(verdicts.filter((v) => !v).length).toBeGreaterThanOrEqual(30);
  });

  it.each(table)("%j (%s)", (ref) => {
    expect(helperAccepts(ref)).toBe(sdkAccepts(ref));
  });

  it("agrees on every printable ASCII character inside, before and after a name", () => {
    const disagreements: string[] = [];
    for (let code = 0x20; code < 0x7f; code++) {
      const c = String.fromCharCode(code);
      if (c === "/" || c === "?") continue; // separators, covered by the table
      for (const ref of [`op://v/a${c}b/f`, `op://v/${c}b/f`, `op://v/i/a${c}`]) {
        if (c === " " && !ref.includes(`a${c}b`)) continue; // edge spaces: see helperStricter
        const sdk = sdkAccepts(ref);
        if (helperAccepts(ref) !== sdk) disagreements.push(`${JSON.stringify(ref)}: SDK ${sdk ? "accepts" : "refuses"}`);
      }
    }
    expect(disagreements).toEqual([]);
  });

  it("agrees on control characters and a sample of non-ASCII", () => {
    const disagreements: string[] = [];
    const chars = [
      ...Array.from({ length: 0x20 }, (_, i) => String.fromCharCode(i)),
      "\x7f",
      "\u0080",
      "é",
      "ß",
      "Ω",
      "\u2028",
      "\ufeff",
      "\u200b",
      "𝔘",
    ];
    for (const c of chars) {
      const ref = `op://v/a${c}b/f`;
      const sdk = sdkAccepts(ref);
      if (helperAccepts(ref) !== sdk) disagreements.push(`${JSON.stringify(ref)}: SDK ${sdk ? "accepts" : "refuses"}`);
    }
    expect(disagreements).toEqual([]);
  });

  it.each(helperStricter)("the helper refuses %j (%s), which the SDK's offline check lets through", (ref) => {
    expect(sdkAccepts(ref)).toBe(true);
    expect(helperAccepts(ref)).toBe(false);
  });
});

describe("parseReference", () => {
  it.each([
    ["op://V/I/f", { vault: "V", item: "I", section: undefined, field: "f", attribute: undefined, sshFormat: undefined }],
    ["op://V/I/S/f", { vault: "V", item: "I", section: "S", field: "f", attribute: undefined, sshFormat: undefined }],
    [
      "op://My Vault/My Item/one-time code?attribute=otp",
      { vault: "My Vault", item: "My Item", section: undefined, field: "one-time code", attribute: "otp", sshFormat: undefined },
    ],
    ["op://V/I/S/f?attribute=totp", { vault: "V", item: "I", section: "S", field: "f", attribute: "totp", sshFormat: undefined }],
    [
      "op://V/SSH/private key?ssh-format=openssh",
      { vault: "V", item: "SSH", section: undefined, field: "private key", attribute: undefined, sshFormat: "openssh" },
    ],
  ])("splits %j", (raw, expected) => {
    expect(parseReference(raw)).toEqual({ raw, ...expected });
  });

  it("prefixes errors with the location it is given and keeps control characters out", () => {
    expect(() => parseReference("op://v/i\nx/f", "spec.json:3: files.a.ref")).toThrow(
      /^spec\.json:3: files\.a\.ref: invalid secret reference "op:\/\/v\/i\\x0ax\/f": /,
    );
  });

  it("uniqueReferences dedupes by raw text in first-seen order", () => {
    const refs = ["op://V/I/b", "op://V/I/a", "op://V/I/b", "op://V/I/a?attribute=otp", "op://V/I/a"].map((r) => parseReference(r));
    expect(uniqueReferences(refs).map((r) => r.raw)).toEqual(["op://V/I/b", "op://V/I/a", "op://V/I/a?attribute=otp"]);
  });
});
