/**
 * One spec's cache file, `<dir>/<spec name>.cred`: the JSON {version, specKey, storedAt,
 * values} sealed by systemd-creds under a name bound to the spec's key. Written to a temp
 * file beside it and renamed into place; the directory is root's and 0700, the file 0600.
 */
import { randomBytes } from "node:crypto";
import { lstat, mkdir, open, readdir, rename, rm, chmod } from "node:fs/promises";
import { join } from "node:path";
import { credentialName } from "./key.js";
import { decrypt, encrypt, type CredsOptions } from "./creds.js";

/** What a cache file holds once decrypted. */
export interface CacheEntry {
  readonly version: 1;
  readonly specKey: string;
  /** ms since the epoch of the fresh resolve these values came from. */
  readonly storedAt: number;
  /** raw reference → value */
  readonly values: Readonly<Record<string, string>>;
}

/** Where one spec's cache lives and how to seal it. */
export interface CacheLocation {
  readonly dir: string;
  readonly specName: string;
  readonly specKey: string;
  readonly creds?: CredsOptions;
}

/** What reading a cache file gave. */
export type ReadOutcome =
  | { readonly kind: "absent" }
  | { readonly kind: "unusable"; readonly why: string }
  | { readonly kind: "ok"; readonly entry: CacheEntry; readonly path: string };

/** What the temp file beside a sealed file ends with (stale ones are removed by this). */
export const tempSuffix = ".hs-tmp";

/** The spec's cache file. */
export function cachePath(dir: string, specName: string): string {
  return join(dir, `${specName}.cred`);
}

/**
 * undefined when `dir` is a real directory of this user's that group and others cannot
 * enter, else why not. Missing: created 0700 when `create`.
 */
export async function privateDirectoryProblem(dir: string, create: boolean): Promise<string | undefined> {
  let stats;
  try {
    stats = await lstat(dir);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== "ENOENT") return `${dir}: ${(error as NodeJS.ErrnoException).code}`;
    if (!create) return `${dir} does not exist`;
    try {
      await mkdir(dir, { recursive: true, mode: 0o700 });
      stats = await lstat(dir);
    } catch (e) {
      return `cannot create ${dir}: ${(e as NodeJS.ErrnoException).code ?? String(e)}`;
    }
  }
  if (!stats.isDirectory()) return `${dir} is not a directory`;
  if (stats.uid !== process.geteuid!()) return `${dir} is owned by uid ${stats.uid}, not by uid ${process.geteuid!()}`;
  if ((stats.mode & 0o077) !== 0) return `${dir} is accessible to group or others (mode ${(stats.mode & 0o777).toString(8)}; want 0700)`;
  return undefined;
}

/** Seal `values` for this spec and put them in place atomically; throws an Error saying why when that fails. */
export async function writeCache(location: CacheLocation, values: ReadonlyMap<string, string>, storedAt: number): Promise<string> {
  const problem = await privateDirectoryProblem(location.dir, true);
  if (problem) throw new Error(problem);
  const path = cachePath(location.dir, location.specName);
  const entry: CacheEntry = { version: 1, specKey: location.specKey, storedAt, values: Object.fromEntries(values) };
  const plaintext = Buffer.from(JSON.stringify(entry), "utf8");
  try {
    await replaceSealedFile(path, async (temp) => {
      const result = await encrypt(credentialName(location.specName, location.specKey), plaintext, temp, location.creds);
      if (!result.ok) throw new Error(result.why);
      await chmod(temp, 0o600);
    });
    return path;
  } finally {
    plaintext.fill(0);
  }
}

/** Decrypt and check this spec's cache file; never throws. */
export async function readCache(location: CacheLocation): Promise<ReadOutcome> {
  const path = cachePath(location.dir, location.specName);
  const problem = await privateDirectoryProblem(location.dir, false);
  if (problem?.endsWith("does not exist")) return { kind: "absent" };
  if (problem) return { kind: "unusable", why: problem };
  try {
    const stats = await lstat(path);
    if (!stats.isFile()) return { kind: "unusable", why: `${path} is not a regular file` };
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === "ENOENT") return { kind: "absent" };
    return { kind: "unusable", why: `${path}: ${(error as NodeJS.ErrnoException).code}` };
  }
  const result = await decrypt(credentialName(location.specName, location.specKey), path, location.creds);
  if (!result.ok) return { kind: "unusable", why: `${path} does not decrypt for this spec on this host (${result.why})` };
  try {
    const entry = parseEntry(result.stdout.toString("utf8"));
    if (entry.specKey !== location.specKey) return { kind: "unusable", why: `${path} holds values for another version of this spec` };
    return { kind: "ok", entry, path };
  } catch (error) {
    return { kind: "unusable", why: `${path}: ${(error as Error).message}` };
  } finally {
    result.stdout.fill(0);
  }
}

/** The cache file's mtime (ms), undefined when there is none: never before its storedAt, so a cheap first test of its age. */
export async function cacheMtime(dir: string, specName: string): Promise<number | undefined> {
  try {
    return (await lstat(cachePath(dir, specName))).mtimeMs;
  } catch {
    return undefined;
  }
}

/** Remove this spec's cache file (too old to use). */
export async function removeCache(dir: string, specName: string): Promise<void> {
  await rm(cachePath(dir, specName), { force: true });
}

/**
 * Temp files a killed store left for this spec: ours (`<name>.cred.<12 hex>.hs-tmp`) and the
 * one systemd-creds writes its output through before renaming it onto ours (`.#` + that name +
 * random characters). Exact patterns: another spec's name may start with this one's.
 */
export async function removeStaleTemps(dir: string, specName: string): Promise<void> {
  const ours = `${specName.replace(/[.]/g, "\\.")}\\.cred\\.[0-9a-f]{12}\\.hs-tmp`;
  const stale = new RegExp(`^(?:${ours}|\\.#${ours}.+)$`);
  let names: string[] = [];
  try {
    names = await readdir(dir);
  } catch {
    return;
  }
  await Promise.all(names.filter((n) => stale.test(n)).map((n) => rm(join(dir, n), { force: true })));
}

/** ms since the epoch that a Date can hold (0 to year 275760). */
function isTime(value: unknown): value is number {
  return typeof value === "number" && Number.isInteger(value) && value >= 0 && value <= maxTime;
}
const maxTime = 8.64e15;

/** The decrypted JSON, checked field by field (the error names the field, never a value). */
export function parseEntry(text: string): CacheEntry {
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch {
    throw new Error("decrypted content is not JSON");
  }
  const o = json as Record<string, unknown>;
  if (typeof o !== "object" || o === null) throw new Error("decrypted content is not an object");
  if (o["version"] !== 1) throw new Error("unknown cache version");
  if (typeof o["specKey"] !== "string") throw new Error("no specKey");
  if (!isTime(o["storedAt"])) throw new Error("no storedAt");
  const values = o["values"];
  if (typeof values !== "object" || values === null || Array.isArray(values)) throw new Error("no values");
  for (const [ref, value] of Object.entries(values)) if (typeof value !== "string") throw new Error(`value of ${ref} is not text`);
  return { version: 1, specKey: o["specKey"], storedAt: o["storedAt"], values: values as Record<string, string> };
}

/**
 * Replace `path` with a file `fill` writes at a temp path beside it (0600, ciphertext only):
 * synced, then renamed over, so a crash leaves the old file or the new one, never a torn one.
 * The directory is not synced (that cost tens of ms per boot-time fetch): a rename lost in a
 * crash leaves the previous, still valid, older entry. The temp file never outlives a failure.
 */
export async function replaceSealedFile(path: string, fill: (temp: string) => Promise<void>): Promise<void> {
  const temp = `${path}.${randomBytes(6).toString("hex")}${tempSuffix}`;
  try {
    await fill(temp);
    const handle = await open(temp, "r");
    try {
      await handle.sync();
    } finally {
      await handle.close();
    }
    await rename(temp, path);
  } catch (error) {
    await rm(temp, { force: true });
    throw error;
  }
}
