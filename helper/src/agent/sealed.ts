/**
 * The agent's sealed last-known-good file, `<dir>/values.sealed`: AES-256-GCM under the
 * 32-byte key systemd decrypted into the agent's $CREDENTIALS_DIRECTORY (LoadCredentialEncrypted=),
 * the source's identity as associated data. The agent runs as a DynamicUser and cannot use the
 * host key itself; the key credential is sealed with it (and a TPM2) by a root unit, so a copy
 * of this file and of the key credential is useless on another host.
 *
 *   magic "hs-agent-sealed\x01" (16) | IV (12) | tag (16) | ciphertext of
 *   {"version":1,"values":{"op://…":{"value":"…","at":<ms fetched>}}}
 */
import { createCipheriv, createDecipheriv, randomBytes } from "node:crypto";
import { lstat, open, readFile, readdir, rm } from "node:fs/promises";
import { join } from "node:path";
import { sourceOrigin } from "../cache/key.js";
import type { SourceConfig } from "../spec.js";
import { privateDirectoryProblem, replaceSealedFile, tempSuffix } from "../cache/store.js";

/** One cached value and when it was fetched fresh (ms since the epoch). */
export interface SealedValue {
  readonly value: string;
  readonly at: number;
}

/** What reading the sealed file gave. */
export type SealedRead =
  | { readonly kind: "absent" }
  | { readonly kind: "unusable"; readonly why: string }
  | { readonly kind: "ok"; readonly values: Map<string, SealedValue> };

/** Where the file is and what it is bound to. */
export interface SealedLocation {
  readonly dir: string;
  /** 32 bytes. */
  readonly key: Buffer;
  readonly source: SourceConfig;
}

export const sealedFileName = "values.sealed";
export const keyLength = 32;
const magic = Buffer.from("hs-agent-sealed\x01", "latin1");
const ivLength = 12;
const tagLength = 16;

/** The file's path in `dir`. */
export const sealedPath = (dir: string): string => join(dir, sealedFileName);

/**
 * Where values come from: the source's type and its host or vault path (not how it is signed
 * in to). A file sealed for another backend fails authentication instead of being served.
 */
export function sourceIdentity(source: SourceConfig): Buffer {
  return Buffer.concat([magic, Buffer.from(JSON.stringify(sourceOrigin(source)), "utf8")]);
}

/** The ciphertext of `values` (a fresh IV each time). */
export function seal(location: Pick<SealedLocation, "key" | "source">, values: ReadonlyMap<string, SealedValue>): Buffer {
  checkKey(location.key);
  const plaintext = Buffer.from(JSON.stringify({ version: 1, values: Object.fromEntries(values) }), "utf8");
  try {
    const iv = randomBytes(ivLength);
    const cipher = createCipheriv("aes-256-gcm", location.key, iv);
    cipher.setAAD(sourceIdentity(location.source));
    const body = Buffer.concat([cipher.update(plaintext), cipher.final()]);
    return Buffer.concat([magic, iv, cipher.getAuthTag(), body]);
  } finally {
    plaintext.fill(0);
  }
}

/** The values in `sealed`, or an Error saying why not (never naming a value). */
export function unseal(location: Pick<SealedLocation, "key" | "source">, sealed: Buffer): Map<string, SealedValue> {
  checkKey(location.key);
  if (sealed.length < magic.length + ivLength + tagLength || !sealed.subarray(0, magic.length).equals(magic))
    throw new Error("not a sealed agent cache (bad header)");
  const iv = sealed.subarray(magic.length, magic.length + ivLength);
  const tag = sealed.subarray(magic.length + ivLength, magic.length + ivLength + tagLength);
  const decipher = createDecipheriv("aes-256-gcm", location.key, iv);
  decipher.setAAD(sourceIdentity(location.source));
  decipher.setAuthTag(tag);
  let plaintext: Buffer;
  try {
    plaintext = Buffer.concat([decipher.update(sealed.subarray(magic.length + ivLength + tagLength)), decipher.final()]);
  } catch {
    throw new Error("does not authenticate (another key, another source, or altered)");
  }
  try {
    return parseValues(plaintext.toString("utf8"));
  } finally {
    plaintext.fill(0);
  }
}

function parseValues(text: string): Map<string, SealedValue> {
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch {
    throw new Error("decrypted content is not JSON");
  }
  const o = json as Record<string, unknown> | null;
  if (typeof o !== "object" || o === null || o["version"] !== 1) throw new Error("unknown sealed cache version");
  const values = o["values"];
  if (typeof values !== "object" || values === null || Array.isArray(values)) throw new Error("no values");
  const out = new Map<string, SealedValue>();
  for (const [ref, entry] of Object.entries(values as Record<string, unknown>)) {
    const e = entry as Record<string, unknown> | null;
    if (typeof e !== "object" || e === null || typeof e["value"] !== "string" || typeof e["at"] !== "number" || !Number.isFinite(e["at"]))
      throw new Error(`entry for ${ref} is malformed`);
    out.set(ref, { value: e["value"], at: e["at"] });
  }
  return out;
}

function checkKey(key: Buffer): void {
  if (key.length !== keyLength) throw new Error(`the cache key is ${key.length} bytes, not ${keyLength}`);
}

/** Seal and put in place atomically (temp file 0600, fsync, rename); throws an Error saying why. */
export async function writeSealed(location: SealedLocation, values: ReadonlyMap<string, SealedValue>): Promise<string> {
  const problem = await privateDirectoryProblem(location.dir, true);
  if (problem) throw new Error(problem);
  const path = sealedPath(location.dir);
  await replaceSealedFile(path, async (temp) => {
    const handle = await open(temp, "wx", 0o600);
    try {
      await handle.writeFile(seal(location, values));
    } finally {
      await handle.close();
    }
  });
  return path;
}

/** Read and unseal; never throws. */
export async function readSealed(location: SealedLocation): Promise<SealedRead> {
  const path = sealedPath(location.dir);
  const problem = await privateDirectoryProblem(location.dir, false);
  if (problem?.endsWith("does not exist")) return { kind: "absent" };
  if (problem) return { kind: "unusable", why: problem };
  let bytes: Buffer;
  try {
    const stats = await lstat(path);
    if (!stats.isFile()) return { kind: "unusable", why: `${path} is not a regular file` };
    bytes = await readFile(path);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === "ENOENT") return { kind: "absent" };
    return { kind: "unusable", why: `${path}: ${(error as NodeJS.ErrnoException).code ?? String(error)}` };
  }
  try {
    return { kind: "ok", values: unseal(location, bytes) };
  } catch (error) {
    return { kind: "unusable", why: `${path} ${(error as Error).message}` };
  }
}

/** Temp files a killed write left. */
export async function removeSealedTemps(dir: string): Promise<void> {
  let names: string[];
  try {
    names = await readdir(dir);
  } catch {
    return;
  }
  await Promise.all(
    names.filter((n) => n.startsWith(`${sealedFileName}.`) && n.endsWith(tempSuffix)).map((n) => rm(join(dir, n), { force: true })),
  );
}
