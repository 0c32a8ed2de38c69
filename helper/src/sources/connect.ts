import type { ClientRequest, RequestOptions } from "node:http";
import { ExitCode, HomelabError, configError } from "../errors.js";
import type { Logger } from "../log.js";
import type { SecretReference } from "../reference.js";
import { connectApi } from "./connect/api.js";
import { createCatalog } from "./connect/catalog.js";
import { collectOutcomes } from "./connect/fields.js";
import { createTransport, type Session } from "./connect/transport.js";
import type { ListenerPolicy } from "./loopback.js";
import type { ResolveContext, Source } from "./source.js";

export { parseRetryAfter } from "./connect/api.js";
export { httpModuleFor, type HttpModule } from "./connect/transport.js";

/**
 * The `connect` source: a self-hosted 1Password Connect server over its REST API, in four
 * parts: connect/transport.ts (HTTP, limits, timeouts, the loopback listener check),
 * connect/api.ts (status → exit class, response shapes, retries), connect/catalog.ts (vault
 * and item lookups, each once per batch) and connect/fields.ts (field picking, the batch's
 * error). Values and the token never reach logs or error messages.
 */
export interface ConnectSourceOptions {
  /** Base URL of the Connect server, e.g. http://127.0.0.1:8080 (a path prefix is kept). */
  readonly host: string;
  readonly token: string;
  /**
   * Sends one request (tests wrap it). Defaults to `request` of node:http or node:https, by
   * the host's scheme; `options.agent` is the batch's keep-alive agent from that module.
   */
  readonly request?: (url: URL, options: RequestOptions) => ClientRequest;
  /** Per-request timeout; the run's deadline still bounds the whole batch. Default 10 s. */
  readonly requestTimeoutMs?: number;
  /** Passed to withRetry for every request (defaults: retry.ts). */
  readonly retry?: { readonly retries?: number; readonly minTimeoutMs?: number; readonly maxTimeoutMs?: number };
  /** Requests in flight at once (and the agent's socket limit). Default 16. */
  readonly maxConcurrency?: number;
  /** Answers larger than this are refused (65). Default 16 MiB. */
  readonly maxResponseBytes?: number;
  /**
   * Over plain http to a loopback address, the uid that may own the server besides root and
   * this process's own (source.listenerUser), checked before the token is sent.
   */
  readonly listenerUid?: number | undefined;
}

export const defaultRequestTimeoutMs = 10_000;
export const defaultMaxResponseBytes = 16 * 1024 * 1024;

/** A Source for one Connect server and token. */
export function createConnectSource(options: ConnectSourceOptions): Source {
  const base = normalizeHost(options.host);
  const token = options.token.trim();
  // A token with whitespace or control characters would make the request fail with an error
  // about the header value (or be sent mangled). Refuse it here without echoing it.
  if (token.length === 0) throw configError("the 1Password Connect token is empty");
  if (!/^[\x21-\x7e]+$/.test(token)) {
    throw configError("the 1Password Connect token contains whitespace or non-ASCII characters; check the token file");
  }
  const display = base.origin + base.pathname.replace(/\/$/, "");
  const transport = createTransport({
    base,
    display,
    headers: { authorization: `Bearer ${token}`, accept: "application/json", "accept-encoding": "identity" },
    secret: token,
    server: "the Connect server",
    expected: "a 1Password Connect server",
    timeoutMs: options.requestTimeoutMs ?? defaultRequestTimeoutMs,
    maxBytes: options.maxResponseBytes ?? defaultMaxResponseBytes,
    maxConcurrency: Math.max(1, options.maxConcurrency ?? 16),
    request: options.request,
    listenerPolicy: () => listenerPolicy(options.listenerUid),
  });

  async function resolveBatch(
    session: Session,
    refs: readonly SecretReference[],
    runSignal: AbortSignal,
    log: Logger,
  ): Promise<Map<string, string>> {
    // A bad token fails every request: stop the rest of the batch at once instead of
    // letting slower requests run through their retries.
    const stop = new AbortController();
    const signal = AbortSignal.any([runSignal, stop.signal]);
    const fatal = (error: unknown): never => {
      if (error instanceof HomelabError && error.exitCode === ExitCode.noPerm && !stop.signal.aborted) stop.abort(error);
      throw error;
    };
    const catalog = createCatalog({ get: connectApi(transport, session, base, display, options.retry), signal, log, display, fatal });
    return collectOutcomes(refs, await Promise.allSettled(refs.map((ref) => catalog.resolve(ref))));
  }

  return {
    name: "connect",
    async resolveAll(refs: readonly SecretReference[], context: ResolveContext): Promise<Map<string, string>> {
      const { log } = context;
      if (refs.length === 0) return new Map();
      const session = await transport.openSession(log);
      try {
        return await resolveBatch(session, refs, context.signal, log);
      } finally {
        // Close the keep-alive sockets so nothing holds the process open.
        session.agent.destroy();
      }
    },
  };
}

/** Over plain http on loopback, who may run the server: root, this process's uid, source.listenerUser. */
function listenerPolicy(listenerUid: number | undefined): ListenerPolicy {
  const euid = process.geteuid?.() ?? 0;
  const allowed = new Set([0, euid, ...(listenerUid === undefined ? [] : [listenerUid])]);
  const names = [
    "root",
    ...(euid !== 0 ? [`this process's uid ${euid}`] : []),
    ...(listenerUid !== undefined ? [`source.listenerUser (uid ${listenerUid})`] : []),
  ];
  return { allowed, describe: names.join(" or ") };
}

function normalizeHost(host: string): URL {
  let url: URL;
  try {
    url = new URL(host);
  } catch {
    throw configError(`the Connect host "${host}" is not a URL (expected e.g. http://127.0.0.1:8080)`);
  }
  if (url.protocol !== "http:" && url.protocol !== "https:") {
    throw configError(`the Connect host "${host}" must be an http:// or https:// URL`);
  }
  if (url.username || url.password) throw configError("the Connect host URL must not contain credentials");
  url.search = "";
  url.hash = "";
  if (!url.pathname.endsWith("/")) url.pathname += "/";
  return url;
}
