import { constants } from "node:fs";
import { open } from "node:fs/promises";
import { join } from "node:path";
import { configError, tempFailError } from "../errors.js";
import type { Logger } from "../log.js";
import { outputDirectorySettings, specOwner } from "../commands/fetch.js";
import { loadSpec, specOutputNames } from "../spec.js";
import { removeFiles, staleTempFiles, writeFilesAtomically } from "../write.js";
import { credentialSizeMax } from "./policy.js";

export interface InstallOptions {
  readonly specFile: string;
  readonly log: Logger;
  readonly env?: NodeJS.ProcessEnv;
}

/**
 * The `<service>-secrets` unit's side of the agent: systemd has loaded each output of the spec
 * as a credential of this unit (LoadCredential=<output>:<agent socket>); write them to the
 * spec's outputDir with its owner and modes, all or nothing — as `fetch` would, without a
 * backend or a token. A missing or empty credential (the agent was killed mid-answer) is a
 * failure (75), never an empty file.
 */
export async function runInstall(options: InstallOptions): Promise<string[]> {
  const { log } = options;
  const spec = await loadSpec(options.specFile);
  const directory = (options.env ?? process.env)["CREDENTIALS_DIRECTORY"];
  if (!directory)
    throw configError(
      `${spec.name}: $CREDENTIALS_DIRECTORY is not set; run under systemd with LoadCredential=<output>:<agent socket> for every output`,
    );
  const owner = specOwner(spec);
  const modes = new Map([...spec.files, ...spec.envFiles, ...spec.templates].map((o) => [o.name, o.mode]));
  const files = [];
  for (const name of specOutputNames(spec)) {
    files.push({
      path: join(spec.outputDir, name),
      content: await readCredential(directory, name, spec.name),
      mode: modes.get(name)!,
      owner,
    });
  }
  await writeFilesAtomically(files, { createDirs: outputDirectorySettings(spec, owner, options.env), log });
  await removeFiles(await staleTempFiles(spec.outputDir, new Set(specOutputNames(spec))), log);
  log.info(`${spec.name}: wrote ${files.length} file(s) to ${spec.outputDir} from the credential agent`);
  return files.map((f) => f.path);
}

async function readCredential(directory: string, name: string, specName: string): Promise<Buffer> {
  const path = join(directory, name);
  let content: Buffer;
  try {
    const handle = await open(path, constants.O_RDONLY | constants.O_NOFOLLOW);
    try {
      const stats = await handle.stat();
      if (!stats.isFile()) throw tempFailError(`${specName}: credential ${name} is not a regular file`);
      content = await handle.readFile();
    } finally {
      await handle.close();
    }
  } catch (error) {
    if (error instanceof Error && error.name === "HomelabError") throw error;
    throw tempFailError(
      `${specName}: credential ${name} was not loaded (${(error as NodeJS.ErrnoException).code ?? "error"}); is it in LoadCredential= and in the agent's policy?`,
    );
  }
  if (content.length === 0)
    throw tempFailError(`${specName}: credential ${name} is empty: the agent could not serve it (see journalctl -u homelab-secrets-agent)`);
  if (content.length >= credentialSizeMax)
    throw tempFailError(`${specName}: credential ${name} is ${content.length} bytes, more than the agent serves`);
  return content;
}
