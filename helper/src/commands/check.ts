import { readFile } from "node:fs/promises";
import { configError } from "../errors.js";
import { parseMapfileStrict } from "../mapfile.js";
import { loadSpec, specReferences } from "../spec.js";

/** Offline validation of a spec; what Nix runs at build time. Returns a one-line summary. */
export async function checkSpec(specFile: string): Promise<string> {
  const spec = await loadSpec(specFile);
  const outputs = spec.files.length + spec.envFiles.length + spec.templates.length;
  return `${specFile}: ok (${spec.name}: ${outputs} output(s), ${specReferences(spec).length} reference(s), source ${spec.source?.type ?? "onepassword"})`;
}


/** Offline validation of a per-user mapfile: every problem as FILE:LINE, exit 65. */
export async function checkMapfile(file: string): Promise<string> {
  const text = await readFile(file, "utf8").catch((error: NodeJS.ErrnoException) => {
    throw configError(`cannot read mapfile ${file}: ${error.code ?? "error"}`);
  });
  const entries = parseMapfileStrict(text, file);
  const users = new Set(entries.map((e) => e.user));
  return `${file}: ok (${entries.length} entr${entries.length === 1 ? "y" : "ies"} for ${users.size} user(s))`;
}
