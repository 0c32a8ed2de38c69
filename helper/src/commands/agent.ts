import { readFile, realpath } from "node:fs/promises";
import { Socket } from "node:net";
import { join } from "node:path";
import { ExitCode, HomelabError, usageError } from "../errors.js";
import type { Logger } from "../log.js";
import { Batcher } from "../agent/batcher.js";
import { LastGood } from "../agent/last-good.js";
import { keyLength } from "../agent/sealed.js";
import { RequestReader } from "../agent/frames.js";
import { loadPolicy, policyReferences } from "../agent/policy.js";
import { answer, replyFrame } from "../agent/server.js";
import { chooseSource, createSource, type SourceOverrides } from "../sources/index.js";
import type { SourceConfig } from "../spec.js";

/** `agent --cache`'s settings. */
export interface AgentCacheSettings {
  /** Where the sealed file is; default $STATE_DIRECTORY (StateDirectory=homelab-secrets-agent). */
  readonly dir?: string;
  /** The 32-byte key; default $CREDENTIALS_DIRECTORY/agent-cache-key (LoadCredentialEncrypted=). */
  readonly keyFile?: string;
  readonly maxAgeSeconds: number;
}

export interface AgentOptions {
  readonly policyFile: string;
  readonly overrides: SourceOverrides;
  readonly ttlSeconds: number;
  /** How long a not-found (69) answer is repeated from memory; default the Batcher's, min(ttl, 30). */
  readonly notFoundSeconds?: number;
  readonly deadlineSeconds: number;
  /** The front end's end of the socketpair (3 under homelab-secrets-agent). */
  readonly fd: number;
  readonly log: Logger;
  readonly signal?: AbortSignal;
  /** The sealed last-known-good cache; off when undefined. */
  readonly cache?: AgentCacheSettings;
  readonly env?: NodeJS.ProcessEnv;
}

/** Validate a policy offline; a one-line summary. */
export async function checkPolicy(file: string): Promise<string> {
  const policy = await loadPolicy(file);
  const credentials = [...policy.units.values()].reduce((n, c) => n + c.size, 0);
  return `${file}: OK (${policy.units.size} unit(s), ${credentials} credential(s), ${policyReferences(policy).length} reference(s))`;
}

/**
 * The sealed cache, or undefined (with a warning) when its key or directory is missing: the
 * agent serves fresh values without it rather than not at all.
 */
export async function openLastGood(
  settings: AgentCacheSettings,
  source: SourceConfig,
  log: Logger,
  env: NodeJS.ProcessEnv,
): Promise<LastGood | undefined> {
  if (!Number.isInteger(settings.maxAgeSeconds) || settings.maxAgeSeconds < 1)
    throw usageError(`--cache-max-age must be a whole number of seconds > 0, not "${String(settings.maxAgeSeconds)}"`);
  const dir = settings.dir ?? env["STATE_DIRECTORY"]?.split(":")[0];
  const credentials = env["CREDENTIALS_DIRECTORY"];
  const keyFile = settings.keyFile ?? (credentials ? join(credentials, "agent-cache-key") : undefined);
  if (!dir || !keyFile) {
    log.warn(
      `agent cache: off: ${!dir ? "no --cache-dir and no $STATE_DIRECTORY (StateDirectory=)" : "no --cache-key and no $CREDENTIALS_DIRECTORY (LoadCredentialEncrypted=agent-cache-key:…)"}`,
    );
    return undefined;
  }
  let key: Buffer;
  try {
    key = await readFile(keyFile);
  } catch (error) {
    log.warn(`agent cache: off: cannot read its key ${keyFile}: ${(error as NodeJS.ErrnoException).code ?? String(error)}`);
    return undefined;
  }
  if (key.length !== keyLength) {
    log.warn(`agent cache: off: its key ${keyFile} is ${key.length} bytes, not ${keyLength}`);
    return undefined;
  }
  // $STATE_DIRECTORY of a DynamicUser= unit is a symlink into /var/lib/private; the privacy check looks at the directory itself.
  const real = await realpath(dir).catch(() => dir);
  return new LastGood({ dir: real, key, source, maxAgeSeconds: settings.maxAgeSeconds, log });
}

/**
 * The Node half of the credential agent: reads requests from the C front end on `fd`,
 * answers each as soon as it can (out of order), and returns when the front end closes it.
 */
export async function runAgent(options: AgentOptions): Promise<void> {
  const { log } = options;
  if (!Number.isFinite(options.ttlSeconds) || options.ttlSeconds < 0 || options.ttlSeconds > 86400) {
    throw usageError(`--ttl must be a number of seconds from 0 to 86400, not "${String(options.ttlSeconds)}"`);
  }
  const policy = await loadPolicy(options.policyFile);
  const sourceConfig = chooseSource(policy.source, options.overrides);
  const batcher = new Batcher({
    createSource: () => createSource(sourceConfig, { log }),
    prefetch: policyReferences(policy),
    ttlSeconds: options.ttlSeconds,
    ...(options.notFoundSeconds !== undefined ? { notFoundSeconds: options.notFoundSeconds } : {}),
    deadlineSeconds: options.deadlineSeconds,
    log,
    ...(options.cache ? { lastGood: await openLastGood(options.cache, sourceConfig, log, options.env ?? process.env) } : {}),
  });
  log.info(
    `agent: ${policy.units.size} unit(s) in ${policy.file}, source ${sourceConfig.type}, ttl ${options.ttlSeconds} s${options.cache ? `, sealed cache (max age ${options.cache.maxAgeSeconds} s)` : ""}`,
  );

  const channel = new Socket({ fd: options.fd, readable: true, writable: true });
  const reader = new RequestReader();
  await new Promise<void>((resolve, reject) => {
    options.signal?.addEventListener("abort", () => {
      channel.destroy();
      resolve();
    });
    channel.on("data", (chunk: Buffer) => {
      let requests;
      try {
        requests = reader.push(chunk);
      } catch (error) {
        channel.destroy();
        reject(new Error(`the front end sent a malformed frame: ${(error as Error).message}`));
        return;
      }
      for (const request of requests) {
        void answer(request, policy, batcher, log).then((a) => {
          if (!channel.destroyed) channel.write(replyFrame(a));
        });
      }
    });
    channel.on("end", () => {
      log.info(`agent: the front end closed the channel after ${batcher.batches} backend batch(es)`);
      resolve();
    });
    channel.on("error", (error) => reject(new HomelabError(ExitCode.tempFail, `agent channel: ${error.message}`)));
  });
}
