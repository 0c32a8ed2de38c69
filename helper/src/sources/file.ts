import { constants } from "node:fs";
import { open } from "node:fs/promises";
import type { Logger } from "../log.js";
import { configError, dataError, isHomelabError, notFoundError } from "../errors.js";
import type { SecretReference } from "../reference.js";
import type { Source } from "./source.js";

/**
 * A local JSON vault for the demo, development and tests:
 * `{"vaults":{"V":{"items":{"I":{"fields":{"f":"v"},"sections":{"S":{"f":"v"}}}}}}}`.
 * Read afresh on every run, so tests can change values between runs.
 */
export function createFileSource(path: string): Source {
  return {
    name: `file:${path}`,
    async resolveAll(refs, context) {
      const vault = await loadVault(path, context.log);
      // One-time passwords need node:crypto; load it only for references that ask for one.
      const totp = refs.some((r) => r.attribute) ? (await import("../totp.js")).totp : undefined;
      const values = new Map<string, string>();
      const missing: string[] = [];
      for (const ref of refs) {
        const value = lookup(vault, ref, totp);
        if (value === undefined) missing.push(ref.raw);
        else values.set(ref.raw, value);
      }
      if (missing.length > 0) {
        throw notFoundError(`not found in ${path}: ${missing.join(", ")}`);
      }
      return values;
    },
  };
}

type Fields = Record<string, unknown>;
interface VaultFile {
  vaults: Record<string, { items?: Record<string, { fields?: Fields; sections?: Record<string, Fields> }> }>;
}

/**
 * The vault holds plain values: anyone who can write it chooses what is delivered (refused),
 * anyone who can read it has every secret (a warning: the bundled demo vault is 0644).
 */
async function loadVault(path: string, log: Logger): Promise<VaultFile> {
  let text: string;
  try {
    // O_NONBLOCK: a FIFO opens at once and is refused below instead of hanging the run.
    const handle = await open(path, constants.O_RDONLY | constants.O_NONBLOCK);
    try {
      const stats = await handle.stat();
      if (!stats.isFile()) throw configError(`vault file ${path} is not a regular file`);
      const mode = (stats.mode & 0o777).toString(8).padStart(4, "0");
      if ((stats.mode & 0o002) !== 0)
        throw configError(
          `vault file ${path} is writable by others (mode ${mode}): anyone could choose the values delivered; chmod o-w it`,
        );
      if ((stats.mode & 0o024) !== 0)
        log.warn(
          `vault file ${path} is ${(stats.mode & 0o004) !== 0 ? "readable by others" : "writable by its group"} (mode ${mode}); it holds plain secret values, chmod 600 it`,
        );
      text = await handle.readFile("utf8");
    } finally {
      await handle.close();
    }
  } catch (error) {
    if (isHomelabError(error)) throw error;
    throw configError(`cannot read vault file ${path}: ${(error as NodeJS.ErrnoException).code ?? "error"}`);
  }
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch {
    throw dataError(`vault file ${path} is not valid JSON`);
  }
  const vaults = (parsed as { vaults?: unknown } | null)?.vaults;
  if (vaults === null || typeof vaults !== "object") throw dataError(`vault file ${path} has no "vaults" object`);
  return parsed as VaultFile;
}

function own<T>(record: Record<string, T> | undefined, key: string): T | undefined {
  return record !== undefined && record !== null && Object.hasOwn(record, key) ? record[key] : undefined;
}

function lookup(vault: VaultFile, ref: SecretReference, totp: typeof import("../totp.js").totp | undefined): string | undefined {
  const item = own(own(vault.vaults, ref.vault)?.items, ref.item);
  const fields = ref.section === undefined ? item?.fields : own(item?.sections, ref.section);
  const value = own(fields, ref.field);
  if (typeof value !== "string") return undefined;
  if (ref.attribute) return totp!(value, Date.now(), ref.raw);
  if (ref.sshFormat && !value.startsWith("-----BEGIN OPENSSH PRIVATE KEY-----")) {
    throw dataError(`${ref.raw}: the field is not an OpenSSH private key`);
  }
  return value;
}
