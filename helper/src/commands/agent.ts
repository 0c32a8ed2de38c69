import { Socket } from "node:net";
import { ExitCode, HomelabError, usageError } from "../errors.js";
import type { Logger } from "../log.js";
import { Batcher } from "../agent/batcher.js";
import { RequestReader } from "../agent/frames.js";
import { loadPolicy, policyReferences } from "../agent/policy.js";
import { answer, replyFrame } from "../agent/server.js";
import { chooseSource, createSource, type SourceOverrides } from "../sources/index.js";

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
}

/** Validate a policy offline; a one-line summary. */
export async function checkPolicy(file: string): Promise<string> {
  const policy = await loadPolicy(file);
  const credentials = [...policy.units.values()].reduce((n, c) => n + c.size, 0);
  return `${file}: OK (${policy.units.size} unit(s), ${credentials} credential(s), ${policyReferences(policy).length} reference(s))`;
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
  });
  log.info(`agent: ${policy.units.size} unit(s) in ${policy.file}, source ${sourceConfig.type}, ttl ${options.ttlSeconds} s`);

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
