import { readFile, stat } from "node:fs/promises";
import type { Logger } from "../log.js";
import { configError } from "../errors.js";
import { parseMapfileStrict } from "../mapfile.js";
import { loadSpec, specReferences } from "../spec.js";
import { isLoopbackAddress } from "../sources/loopback.js";

/**
 * Offline validation of a spec; what Nix runs at build time. Returns a one-line summary;
 * a Connect host over plain http off this host is a warning (the token would cross the
 * network unencrypted).
 */
export async function checkSpec(specFile: string, log?: Logger): Promise<string> {
  const spec = await loadSpec(specFile);
  if (spec.source?.type === "connect" && log) {
    const url = new URL(spec.source.host);
    const name = url.hostname.replace(/^\[|\]$/g, "");
    if (url.protocol === "http:" && name !== "localhost" && !isLoopbackAddress(name)) {
      log.warn(
        `${specFile}: source.host ${spec.source.host} is plain http to another host: the token and every value would cross the network unencrypted; use https`,
      );
    }
  }
  const outputs = spec.files.length + spec.envFiles.length + spec.templates.length;
  return `${specFile}: ok (${spec.name}: ${outputs} output(s), ${specReferences(spec).length} reference(s), source ${spec.source?.type ?? "onepassword"})`;
}

/**
 * Offline validation of a per-user mapfile: every problem as FILE:LINE, exit 65. A mapfile
 * others can write is refused (it decides which secrets go to whom); one others can read is
 * a warning (it tells every user which secrets everyone gets).
 */
export async function checkMapfile(file: string, log?: Logger): Promise<string> {
  const stats = await stat(file).catch((error: NodeJS.ErrnoException) => {
    throw configError(`cannot read mapfile ${file}: ${error.code ?? "error"}`);
  });
  if (!stats.isFile()) throw configError(`mapfile ${file} is not a regular file`);
  const mode = (stats.mode & 0o777).toString(8).padStart(4, "0");
  if ((stats.mode & 0o022) !== 0) throw configError(`mapfile ${file} is writable by group or others (mode ${mode}); chmod go-w it`);
  if ((stats.mode & 0o004) !== 0)
    log?.warn(`mapfile ${file} is readable by others (mode ${mode}): it shows every user which secrets everyone gets; consider 0640`);
  const text = await readFile(file, "utf8").catch((error: NodeJS.ErrnoException) => {
    throw configError(`cannot read mapfile ${file}: ${error.code ?? "error"}`);
  });
  const entries = parseMapfileStrict(text, file);
  const users = new Set(entries.map((e) => e.user));
  return `${file}: ok (${entries.length} entr${entries.length === 1 ? "y" : "ies"} for ${users.size} user(s))`;
}
