import { replaceControl } from "./log.js";
import { dataError } from "./errors.js";

/** A parsed `op://vault/item/[section/]field[?attribute=otp|totp][?ssh-format=openssh]`. */
export interface SecretReference {
  /** The reference exactly as written; the key for resolved values. */
  readonly raw: string;
  readonly vault: string;
  readonly item: string;
  readonly section: string | undefined;
  readonly field: string;
  readonly attribute: "otp" | "totp" | undefined;
  readonly sshFormat: "openssh" | undefined;
}

// Characters the 1Password SDK's own validator accepts in a name (tests/unit/reference
// compares this table with the SDK's `validateSecretReference`).
const segmentPattern = /^[A-Za-z0-9 _.-]+$/;

/** Parse and validate a reference; `where` prefixes errors (e.g. "spec.json:12: files.x.ref"). */
export function parseReference(raw: string, where?: string): SecretReference {
  const fail = (why: string): never => {
    throw dataError(`${where ? `${where}: ` : ""}invalid secret reference "${printable(raw)}": ${why}`);
  };
  if (typeof raw !== "string") fail("not a string");
  if (!raw.startsWith("op://")) fail('must start with "op://"');
  const [path = "", query, ...extra] = raw.slice("op://".length).split("?");
  if (extra.length > 0) fail("only one query parameter is allowed");
  const segments = path.split("/");
  if (segments.length !== 3 && segments.length !== 4) {
    fail("must have 3 or 4 segments: op://vault/item/[section/]field");
  }
  for (const segment of segments) {
    if (segment.length === 0) fail("empty segment");
    if (segment.trim() !== segment) fail(`segment "${segment}" has leading or trailing spaces`);
    if (!segmentPattern.test(segment)) {
      fail(`segment "${printable(segment)}" has characters 1Password does not allow (use letters, digits, space, "-", "_", ".")`);
    }
  }
  let attribute: SecretReference["attribute"];
  let sshFormat: SecretReference["sshFormat"];
  if (query !== undefined) {
    const [key, value, ...rest] = query.split("=");
    if (rest.length > 0) fail(`bad query "${query}"`);
    if (key === "attribute" && (value === "otp" || value === "totp")) attribute = value;
    else if (key === "ssh-format" && value === "openssh") sshFormat = value;
    else fail(`unsupported query "${query}" (allowed: attribute=otp, attribute=totp, ssh-format=openssh)`);
  }
  const [vault, item, a, b] = segments as [string, string, string, string | undefined];
  return {
    raw,
    vault,
    item,
    section: b === undefined ? undefined : a,
    field: b === undefined ? a : b,
    attribute,
    sshFormat,
  };
}

/** References are not secrets, but keep control characters out of log lines. */
function printable(text: string): string {
  return replaceControl(String(text), (c) => `\\x${c.charCodeAt(0).toString(16).padStart(2, "0")}`);
}

/** Deduplicate by raw text, keeping first-seen order. */
export function uniqueReferences(refs: Iterable<SecretReference>): SecretReference[] {
  const seen = new Map<string, SecretReference>();
  for (const ref of refs) if (!seen.has(ref.raw)) seen.set(ref.raw, ref);
  return [...seen.values()];
}
