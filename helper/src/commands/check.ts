import { loadSpec, specReferences } from "../spec.js";

/** Offline validation of a spec; what Nix runs at build time. Returns a one-line summary. */
export async function checkSpec(specFile: string): Promise<string> {
  const spec = await loadSpec(specFile);
  const outputs = spec.files.length + spec.envFiles.length + spec.templates.length;
  return `${specFile}: ok (${spec.name}: ${outputs} output(s), ${specReferences(spec).length} reference(s), source ${spec.source?.type ?? "onepassword"})`;
}

