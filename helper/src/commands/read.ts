import { resolve as resolvePath } from "node:path";
import { usageError } from "../errors.js";
import type { Logger } from "../log.js";
import { modeProblem } from "../spec.js";
import { parseReference } from "../reference.js";
import { utf8 } from "../render/outputs.js";
import { resolveReferences } from "../resolve.js";
import { chooseSource, createSource, type SourceOverrides } from "../sources/index.js";
import { writeFilesAtomically } from "../write.js";

export interface ReadOptions {
  readonly ref: string;
  readonly out?: string | undefined;
  readonly mode: number;
  readonly overrides: SourceOverrides;
  readonly deadlineSeconds: number;
  readonly log: Logger;
  readonly signal?: AbortSignal;
}

/** One reference to stdout (exact bytes, no newline) or atomically to a file. */
export async function runRead(options: ReadOptions): Promise<void> {
  const ref = parseReference(options.ref);
  // The spec's rule for secret files, before anything is fetched.
  const modeText = options.mode.toString(8).padStart(4, "0");
  const problem = options.out === undefined ? undefined : modeProblem(modeText);
  if (problem) throw usageError(`--mode ${problem}`);
  const source = await createSource(chooseSource(undefined, options.overrides), { log: options.log });
  const values = await resolveReferences(source, [ref], {
    deadlineSeconds: options.deadlineSeconds,
    log: options.log,
    ...(options.signal ? { signal: options.signal } : {}),
  });
  const content = utf8(values.get(ref.raw)!, ref.raw);
  if (options.out === undefined) {
    await new Promise<void>((resolve, reject) => process.stdout.write(content, (error) => (error ? reject(error) : resolve())));
    return;
  }
  const path = resolvePath(options.out);
  await writeFilesAtomically([{ path, content, mode: options.mode }], { log: options.log });
  options.log.info(`wrote ${ref.raw} to ${path}`);
}
