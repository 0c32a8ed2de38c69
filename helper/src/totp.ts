import { createHmac } from "node:crypto";
import { dataError } from "./errors.js";

/**
 * RFC 6238 TOTP from an `otpauth://totp/…?secret=…` URI or a bare base32 secret
 * (the file source's equivalent of 1Password's `?attribute=otp`).
 */
export function totp(secretOrUri: string, nowMs: number, where: string): string {
  let secret = secretOrUri;
  let digits = 6;
  let period = 30;
  let algorithm = "sha1";
  if (secretOrUri.startsWith("otpauth://")) {
    let url: URL;
    try {
      url = new URL(secretOrUri);
    } catch {
      // Node's TypeError carries the whole URI, secret included, as `input`.
      throw dataError(`${where}: the field is not a usable one-time-password secret`);
    }
    secret = url.searchParams.get("secret") ?? "";
    digits = Number(url.searchParams.get("digits") ?? 6);
    period = Number(url.searchParams.get("period") ?? 30);
    algorithm = (url.searchParams.get("algorithm") ?? "SHA1").toLowerCase();
  }
  const key = base32Decode(secret.replace(/[\s=]/g, "").toUpperCase());
  if (!key || key.length === 0 || ![6, 7, 8].includes(digits) || !(period > 0) || !["sha1", "sha256", "sha512"].includes(algorithm)) {
    throw dataError(`${where}: the field is not a usable one-time-password secret`);
  }
  const counter = Buffer.alloc(8);
  counter.writeBigUInt64BE(BigInt(Math.floor(nowMs / 1000 / period)));
  const mac = createHmac(algorithm, key).update(counter).digest();
  const offset = mac[mac.length - 1]! & 0x0f;
  const code = (mac.readUInt32BE(offset) & 0x7fffffff) % 10 ** digits;
  return String(code).padStart(digits, "0");
}

function base32Decode(text: string): Buffer | undefined {
  const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
  let bits = 0;
  let value = 0;
  const out: number[] = [];
  for (const char of text) {
    const index = alphabet.indexOf(char);
    if (index < 0) return undefined;
    value = (value << 5) | index;
    bits += 5;
    if (bits >= 8) {
      out.push((value >>> (bits - 8)) & 0xff);
      bits -= 8;
    }
  }
  return Buffer.from(out);
}
