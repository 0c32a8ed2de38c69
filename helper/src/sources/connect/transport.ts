/**
 * HTTP for the Connect source, and nothing of its API: one keep-alive agent per batch
 * (node:http / node:https, whichever the scheme needs, imported on first use — not the
 * global fetch: undici compiles a WASM parser on its first request, about +100 ms and
 * +38 MiB per boot-time process), a concurrency limit, a per-request timeout, an answer size
 * limit, and on plain-http loopback the listener's owner checked before any byte is sent.
 */
import type { Agent, AgentOptions, ClientRequest, IncomingMessage, RequestOptions } from "node:http";
import type { NetConnectOpts, Socket } from "node:net";
import pLimit from "p-limit";
import { HomelabError, dataError, tempFailError } from "../../errors.js";
import { replaceControl, type Logger } from "../../log.js";
import { assertTrustedListener, isLoopbackAddress, type ListenerPolicy } from "../loopback.js";

/** What the transport needs of node:http / node:https. */
export interface HttpModule {
  readonly request: (url: URL, options: RequestOptions) => ClientRequest;
  readonly Agent: new (options: AgentOptions) => Agent;
}

/** node:https for https:// URLs, node:http otherwise; only the one needed is imported. */
export async function httpModuleFor(url: URL): Promise<HttpModule> {
  return url.protocol === "https:" ? await import("node:https") : await import("node:http");
}

/** An HTTP answer, read in full. */
export interface RawResponse {
  readonly status: number;
  readonly retryAfter: string | null;
  readonly text: string;
}

/** One batch's connection pool; the agent is destroyed when the batch ends. */
export interface Session {
  readonly request: (url: URL, options: RequestOptions) => ClientRequest;
  readonly agent: Agent;
}

export interface TransportOptions {
  readonly base: URL;
  /** The base URL as messages show it. */
  readonly display: string;
  /** Sent with every request. */
  readonly headers: Readonly<Record<string, string>>;
  /** Never shown: replaced by "[token]" in anything the server or network says. */
  readonly secret: string;
  /** How messages name the server ("the Connect server") and what it should be. */
  readonly server: string;
  readonly expected: string;
  readonly timeoutMs: number;
  readonly maxBytes: number;
  readonly maxConcurrency: number;
  readonly request?: ((url: URL, options: RequestOptions) => ClientRequest) | undefined;
  /** Who may own a plain-http loopback listener. */
  readonly listenerPolicy: () => ListenerPolicy;
}

export interface Transport {
  openSession(log: Logger): Promise<Session>;
  /**
   * Send one GET and read the whole answer. Bounded by the per-request timeout and the
   * signal: either destroys the request. Network failures and timeouts are transient (75);
   * an answer over the size limit is refused (65). Redirects are not followed.
   */
  send(session: Session, url: URL, what: string, signal: AbortSignal): Promise<RawResponse>;
  /** Scrub anything server- or network-provided before it goes into a message. */
  readonly scrub: (text: string) => string;
}

/** Decodes as fetch's `text()` did: UTF-8, a leading BOM dropped, bad bytes replaced. */
const utf8 = new TextDecoder("utf-8");

export function createTransport(options: TransportOptions): Transport {
  const { base, display, timeoutMs, maxBytes, maxConcurrency } = options;
  const limit = pLimit(maxConcurrency);
  const scrub = (text: string) => replaceControl(text.split(options.secret).join("[token]"), " ").slice(0, 200);

  async function openSession(log: Logger): Promise<Session> {
    const http = await httpModuleFor(base);
    const agentOptions = { keepAlive: true, maxSockets: maxConcurrency, maxFreeSockets: maxConcurrency };
    const agent =
      base.protocol === "http:"
        ? await checkedPlainAgent(http, agentOptions, options.listenerPolicy(), display, log)
        : new http.Agent(agentOptions);
    return { request: options.request ?? http.request, agent };
  }

  function sendNow(session: Session, url: URL, what: string, signal: AbortSignal): Promise<RawResponse> {
    return new Promise<RawResponse>((resolve, reject) => {
      if (signal.aborted) {
        reject(abortError(signal));
        return;
      }
      let request: ClientRequest | undefined;
      let settled = false;
      let timedOut = false;
      const finish = (error: HomelabError | undefined, response?: RawResponse) => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        signal.removeEventListener("abort", onAbort);
        if (error) {
          request?.destroy();
          reject(error);
        } else {
          resolve(response!);
        }
      };
      const fail = (error: unknown) => {
        if (signal.aborted) return finish(abortError(signal));
        // The loopback listener check refused the server: never retried.
        if (error instanceof HomelabError) return finish(error);
        if (timedOut) {
          return finish(tempFailError(`${what}: no answer from ${options.server} within ${Math.round(timeoutMs / 100) / 10}s`));
        }
        finish(tempFailError(`${what}: cannot reach ${options.server} at ${display} (${scrub(networkReason(error))})`));
      };
      const tooLarge = () =>
        finish(
          dataError(`${what}: the server's answer is larger than ${Math.round(maxBytes / 1024)} KiB; is the host ${options.expected}?`),
        );
      const onAbort = () => fail(signal.reason);
      const timer = setTimeout(() => {
        timedOut = true;
        fail(undefined);
      }, timeoutMs);
      signal.addEventListener("abort", onAbort, { once: true });

      const onResponse = (response: IncomingMessage) => {
        const declared = Number(response.headers["content-length"]);
        if (Number.isFinite(declared) && declared > maxBytes) return tooLarge();
        const encoding = response.headers["content-encoding"];
        if (encoding !== undefined && encoding.toLowerCase() !== "identity") {
          return finish(dataError(`${what}: the server sent a compressed answer (${scrub(encoding)}) although none was asked for`));
        }
        const chunks: Buffer[] = [];
        let size = 0;
        response.on("data", (chunk: Buffer) => {
          size += chunk.length;
          if (size > maxBytes) tooLarge();
          else chunks.push(chunk);
        });
        response.on("end", () => {
          const retryAfter = response.headers["retry-after"];
          finish(undefined, {
            status: response.statusCode ?? 0,
            retryAfter: retryAfter ?? null,
            text: utf8.decode(Buffer.concat(chunks, size)),
          });
        });
        response.on("error", fail);
        response.on("close", () => {
          if (!response.complete)
            fail(Object.assign(new Error("connection closed before the answer was complete"), { code: "ECONNRESET" }));
        });
      };

      try {
        request = session.request(url, { method: "GET", headers: options.headers, agent: session.agent });
      } catch (error) {
        fail(error);
        return;
      }
      request.on("error", fail);
      request.on("response", onResponse);
      request.end();
    });
  }

  return {
    openSession,
    send: (session, url, what, signal) => limit(() => sendNow(session, url, what, signal)),
    scrub,
  };
}

/**
 * An agent for plain http whose sockets are handed to a request only once connected and
 * checked: on loopback, the server's owner (assertTrustedListener) before a single byte,
 * and so the token, is written; elsewhere a warning, once, that the token crosses the
 * network unencrypted.
 */
async function checkedPlainAgent(
  http: HttpModule,
  agentOptions: AgentOptions,
  policy: ListenerPolicy,
  display: string,
  log: Logger,
): Promise<Agent> {
  const net = await import("node:net");
  let warned = false;
  const agent = new http.Agent(agentOptions);
  type Callback = (error: Error | null, socket?: Socket) => void;
  (agent as unknown as { createConnection: (o: NetConnectOpts, cb: Callback) => undefined }).createConnection = (
    connectOptions,
    callback,
  ) => {
    const socket = net.connect(connectOptions);
    const onError = (error: Error) => callback(error);
    socket.once("error", onError);
    socket.once("connect", () => {
      const server = { address: socket.remoteAddress ?? "", port: socket.remotePort ?? 0 };
      const client = { address: socket.localAddress ?? "", port: socket.localPort ?? 0 };
      if (!isLoopbackAddress(server.address)) {
        if (!warned)
          log.warn(
            `the Connect host ${display} is plain http on a non-loopback address (${server.address}): the token and every value cross the network unencrypted; use https`,
          );
        warned = true;
        socket.off("error", onError);
        callback(null, socket);
        return;
      }
      assertTrustedListener(server, client, policy).then(
        () => {
          socket.off("error", onError);
          callback(null, socket);
        },
        (error: Error) => {
          socket.off("error", onError);
          socket.destroy();
          callback(error);
        },
      );
    });
    return undefined;
  };
  return agent;
}

/** The useful part of a network error: its code and message (or its cause's). */
function networkReason(error: unknown): string {
  const describe = (e: { code?: unknown; message?: unknown }): string | undefined => {
    const code = typeof e.code === "string" ? e.code : undefined;
    const message = typeof e.message === "string" && e.message.length > 0 ? e.message : undefined;
    if (code && message) return message.includes(code) ? message : `${code}: ${message}`;
    return code ?? message;
  };
  if (typeof error !== "object" || error === null) return String(error);
  const cause = (error as { cause?: unknown }).cause;
  const own = error as { code?: unknown; message?: unknown };
  // An error without a code of its own that wraps one with a code: the cause says more.
  if (typeof own.code !== "string" && typeof cause === "object" && cause !== null) {
    const inner = describe(cause);
    if (inner) return inner;
  }
  return describe(own) ?? "unknown network error";
}

function abortError(signal: AbortSignal): HomelabError {
  const reason: unknown = signal.reason;
  return reason instanceof HomelabError ? reason : tempFailError("operation aborted");
}
