import { constants } from "node:fs";
import { open } from "node:fs/promises";
import { join } from "node:path";
import { configError, tempFailError } from "../errors.js";
import type { Logger } from "../log.js";
import { outputDirectorySettings, specOwner } from "../commands/fetch.js";
import { loadSpec, specOutputNames, type Spec } from "../spec.js";
import { removeFiles, staleTempFiles, writeFilesAtomically, type FileToWrite } from "../write.js";
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
  const owner = specOwner(spec);
  const files = await filesFromCredentials(spec, options.env);
  await writeFilesAtomically(files, { createDirs: outputDirectorySettings(spec, owner, options.env), log });
  await removeFiles(await staleTempFiles(spec.outputDir, new Set(specOutputNames(spec))), log);
  log.info(`${spec.name}: wrote ${files.length} file(s) to ${spec.outputDir} from the credential agent`);
  return files.map((f) => f.path);
}

/**
 * Every output of `spec` as systemd loaded it from the agent into $CREDENTIALS_DIRECTORY, as
 * the file to write in its outputDir (the spec's owner and modes). Reads everything before
 * anything is written: a missing or empty credential is 75, $CREDENTIALS_DIRECTORY unset 78.
 */
export async function filesFromCredentials(spec: Spec, env: NodeJS.ProcessEnv = process.env): Promise<FileToWrite[]> {
  const directory = env["CREDENTIALS_DIRECTORY"];
  if (!directory)
    throw configError(
      `${spec.name}: $CREDENTIALS_DIRECTORY is not set; run under systemd with LoadCredential=<output>:<agent socket> for every output`,
    );
  const owner = specOwner(spec);
  const modes = new Map([...spec.files, ...spec.envFiles, ...spec.templates].map((o) => [o.name, o.mode]));
  const files: FileToWrite[] = [];
  for (const name of specOutputNames(spec)) {
    files.push({
      path: join(spec.outputDir, name),
      content: await readCredential(directory, name, spec.name),
      mode: modes.get(name)!,
      owner,
    });
  }
  return files;
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
