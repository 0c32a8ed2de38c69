import { open } from "node:fs/promises";
import { join } from "node:path";
import { constants } from "node:fs";
import { configError, isHomelabError } from "./errors.js";
import { accessibleToOthers } from "./file-rules.js";

export interface TokenLocation {
  /** A file given explicitly (--token-file, spec tokenFile). */
  readonly file?: string | undefined;
  /** A systemd credential name, read from $CREDENTIALS_DIRECTORY. */
  readonly credential?: string | undefined;
}

/**
 * Read a token from a file or systemd credential. One trailing newline is dropped (agenix
 * and editors add one). A token file that group or others can read is refused: a secret
 * left readable is a misconfiguration worth stopping for.
 */
export async function loadToken(location: TokenLocation, env: NodeJS.ProcessEnv = process.env): Promise<string> {
  let path = location.file;
  if (!path) {
    const directory = env["CREDENTIALS_DIRECTORY"];
    const name = location.credential ?? "op-token";
    if (!directory) {
      throw configError(
        `no token: $CREDENTIALS_DIRECTORY is not set (run under systemd with LoadCredential=${name}:PATH) and no --token-file was given`,
      );
    }
    path = join(directory, name);
  }
  let text: string;
  try {
    // O_NONBLOCK: a FIFO (or a device) opens at once instead of waiting for a writer that
    // may never come, and is then refused by the fstat below; regular files ignore the flag.
    const handle = await open(path, constants.O_RDONLY | constants.O_NOFOLLOW | constants.O_NONBLOCK);
    try {
      const stats = await handle.stat();
      if (!stats.isFile()) throw configError(`token ${path} is not a regular file`);
      if (accessibleToOthers(stats) && location.file) {
        throw configError(
          `token file ${path} is readable or writable by group or others (mode ${(stats.mode & 0o777).toString(8)}); chmod 600 it`,
        );
      }
      text = await handle.readFile("utf8");
    } finally {
      await handle.close();
    }
  } catch (error) {
    if (isHomelabError(error)) throw error;
    const code = (error as NodeJS.ErrnoException).code ?? "error";
    throw configError(`cannot read token ${path}: ${code === "ELOOP" ? "it is a symlink" : code}`);
  }
  return tokenFromText(text, path);
}

/** A token file's text: one trailing newline dropped (agenix and editors add one); empty is refused. */
export function tokenFromText(text: string, path: string): string {
  const token = text.replace(/\r?\n$/, "");
  if (token.length === 0) throw configError(`token ${path} is empty`);
  return token;
}
