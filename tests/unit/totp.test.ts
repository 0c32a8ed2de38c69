// TOTP (the file source's `?attribute=otp`) pinned to RFC 6238's Appendix B test vectors.
import { describe, expect, it } from "vitest";
import { totp } from "../../helper/src/totp.js";

/** RFC 4648 base32 without padding: written here, independent of the decoder under test. */
function base32(bytes: Buffer): string {
  const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
  let bits = 0;
  let value = 0;
  let out = "";
  for (const byte of bytes) {
    value = (value << 8) | byte;
    bits += 8;
    while (bits >= 5) {
      out += alphabet[(value >>> (bits - 5)) & 31];
      bits -= 5;
    }
  }
  if (bits > 0) out += alphabet[(value << (5 - bits)) & 31];
  return out;
}

// Appendix B: the seed is the ASCII string "1234567890" repeated to the HMAC's key length.
const seeds = {
  SHA1: Buffer.from("12345678901234567890"),
  SHA256: Buffer.from("12345678901234567890123456789012"),
  SHA512: Buffer.from("1234567890123456789012345678901234567890123456789012345678901234"),
};

const vectors: [seconds: number, sha1: string, sha256: string, sha512: string][] = [
  [59, "94287082", "46119246", "90693936"],
  [1111111109, "07081804", "68084774", "25091201"],
  [1111111111, "14050471", "67062674", "99943326"],
  [1234567890, "89005924", "91819424", "93441116"],
  [2000000000, "69279037", "90698825", "38618901"],
  [20000000000, "65353130", "77737706", "47863826"],
];

describe("totp: RFC 6238 Appendix B", () => {
  for (const [seconds, ...codes] of vectors) {
    (["SHA1", "SHA256", "SHA512"] as const).forEach((algorithm, i) => {
      it(`T=${seconds} ${algorithm} → ${codes[i]}`, () => {
        const uri = `otpauth://totp/rfc6238?secret=${base32(seeds[algorithm])}&digits=8&period=30&algorithm=${algorithm}`;
        expect(totp(uri, seconds * 1000, "op://V/I/f?attribute=otp")).toBe(codes[i]);
      });
    });
  }

  it("a bare base32 secret defaults to SHA1, 6 digits, 30 s (the last 6 digits of the vector)", () => {
    expect(totp(base32(seeds.SHA1), 59_000, "x")).toBe("287082");
    expect(totp(base32(seeds.SHA1).toLowerCase(), 1111111109_000, "x")).toBe("081804");
  });

  it("the period moves the counter: 60 s periods at T=59 and T=119 differ, T=60 and T=119 agree", () => {
    const uri = (t: number) => totp(`otpauth://totp/x?secret=${base32(seeds.SHA1)}&period=60`, t * 1000, "x");
    expect(uri(60)).toBe(uri(119));
    expect(uri(59)).not.toBe(uri(60));
  });
});
