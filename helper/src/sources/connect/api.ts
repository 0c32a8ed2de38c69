/**
 * 1Password Connect's REST API as the source uses it: an HTTP status to an exit class, the
 * response shapes (only what we read), and one GET with retries.
 *
 *   GET /v1/vaults?filter=title eq "T"                 → vault id
 *   GET /v1/vaults/{vaultId}/items?filter=title eq "T" → item id
 *   GET /v1/vaults/{vaultId}/items/{itemId}            → full item (fields, sections)
 */
import { configError, dataError, permissionError, tempFailError } from "../../errors.js";
import type { Logger } from "../../log.js";
import { withRetry, type RetryOptions } from "../../retry.js";
import type { RawResponse, Session, Transport } from "./transport.js";

export interface ConnectVault {
  readonly id: string;
  readonly name?: string;
}
export interface ConnectItemSummary {
  readonly id: string;
  readonly title?: string;
}
export interface ConnectField {
  readonly id?: string;
  readonly type?: string;
  readonly purpose?: string;
  readonly label?: string;
  readonly value?: string;
  readonly section?: { readonly id?: string } | null;
  readonly totp?: string;
  /** What `op item get --format json` returns for SSH keys; honoured if a server sends it. */
  readonly ssh_formats?: { readonly openssh?: { readonly value?: string } };
}
export interface ConnectItem {
  readonly id: string;
  readonly title?: string;
  readonly fields?: readonly ConnectField[];
  readonly sections?: readonly { readonly id?: string; readonly label?: string }[];
}

/** A 2xx answer's JSON, or a 404 (or, when allowed, 400) with no body. */
export interface Response {
  readonly status: number;
  readonly body: unknown;
}

/** One GET of `path` (relative to the base URL), retried on transient failures. */
export type Get = (path: string, signal: AbortSignal, log: Logger, allowMissing: boolean) => Promise<Response>;

/** Bind the API to a transport and one batch's session. */
export function connectApi(
  transport: Transport,
  session: Session,
  base: URL,
  display: string,
  retry: Omit<RetryOptions, "signal" | "log"> | undefined,
): Get {
  return (path, signal, log, allowMissing) => {
    const url = new URL(path.replace(/^\//, ""), base);
    const what = `Connect GET ${decodeForLog(url)}`;
    return withRetry(
      what,
      async () => {
        const started = performance.now();
        const response = await transport.send(session, url, what, signal);
        log.debug(`${what} → ${response.status} (${Math.round(performance.now() - started)} ms)`);
        return interpret(response, what, { allowMissing, display, scrub: transport.scrub });
      },
      { signal, log, ...retry },
    );
  };
}

/**
 * An answer to its meaning. Returns 2xx and 404 (and 400 when `allowMissing`); everything
 * else becomes a HomelabError: 77 for 401/403, 75 (with Retry-After) for 408/425/429/5xx,
 * 78 for a redirect, 65 otherwise.
 */
export function interpret(
  response: RawResponse,
  what: string,
  context: { readonly allowMissing: boolean; readonly display: string; readonly scrub: (text: string) => string },
): Response {
  const { status, text } = response;
  if (status >= 200 && status < 300) return { status, body: parseJson(text, what) };
  if (status === 404 || (context.allowMissing && status === 400)) return { status, body: undefined };
  const message = serverMessage(text);
  const detail = message ? `: ${context.scrub(message)}` : "";
  if (status === 401) throw permissionError(`Connect rejected the token (HTTP 401${detail}); check the op-connect-token credential`);
  if (status === 403) {
    throw permissionError(
      `Connect rejected the token for ${what.slice("Connect GET ".length)} (HTTP 403${detail}); does the token have access to this vault?`,
    );
  }
  if (status === 408 || status === 425 || status === 429 || status >= 500) {
    const retryAfterMs = parseRetryAfter(response.retryAfter);
    const hint = retryAfterMs === undefined ? "" : ` (Retry-After ${Math.ceil(retryAfterMs / 1000)}s)`;
    throw tempFailError(`${what}: HTTP ${status}${detail}${hint}`, retryAfterMs === undefined ? {} : { retryAfterMs });
  }
  if (status >= 300 && status < 400) {
    throw configError(
      `${what}: the Connect server at ${context.display} answered with a redirect (HTTP ${status}); set the host to the final URL`,
    );
  }
  throw dataError(`${what}: the Connect server refused the request (HTTP ${status}${detail})`);
}

/** Retry-After is either delta-seconds or an HTTP date. */
export function parseRetryAfter(header: string | null, now = Date.now()): number | undefined {
  if (header === null) return undefined;
  const text = header.trim();
  if (/^\d+$/.test(text)) return Number(text) * 1000;
  const at = Date.parse(text);
  if (Number.isNaN(at)) return undefined;
  return Math.max(0, at - now);
}

export const enc = encodeURIComponent;

/** Connect's SCIM-style filter; names cannot contain quotes (reference.ts), escape anyway. */
export function titleFilter(name: string): string {
  return `title eq "${name.replace(/["\\]/g, (c) => `\\${c}`)}"`;
}

/** The entries of a list answer that have an id. */
export function asArray<T extends { id: string }>(body: unknown, what: string): T[] {
  if (!Array.isArray(body)) throw dataError(`Connect returned an unexpected ${what} (not a list)`);
  return body.filter(
    (entry): entry is T => typeof entry === "object" && entry !== null && typeof (entry as { id?: unknown }).id === "string",
  );
}

/** An object answer with an id. */
export function asObject<T extends { id: string }>(body: unknown, what: string): T {
  if (typeof body !== "object" || body === null || typeof (body as { id?: unknown }).id !== "string") {
    throw dataError(`Connect returned an unexpected ${what} (no id)`);
  }
  return body as T;
}

/** A full item answer. */
export function asItem(body: unknown): ConnectItem {
  const item = asObject<ConnectItem>(body, "item");
  if (item.fields !== undefined && !Array.isArray(item.fields))
    throw dataError("Connect returned an unexpected item (fields is not a list)");
  if (item.sections !== undefined && item.sections !== null && !Array.isArray(item.sections)) {
    throw dataError("Connect returned an unexpected item (sections is not a list)");
  }
  return item;
}

function parseJson(text: string, what: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    // Never pass the parser's message on: it quotes the body, which may hold values.
    throw dataError(`${what}: the server's answer is not JSON; is the host a 1Password Connect server?`);
  }
}

function serverMessage(text: string): string | undefined {
  try {
    const body: unknown = JSON.parse(text);
    if (typeof body === "object" && body !== null && typeof (body as { message?: unknown }).message === "string") {
      return (body as { message: string }).message;
    }
  } catch {
    // not JSON (a proxy's HTML page): say nothing about the body
  }
  return undefined;
}

function decodeForLog(url: URL): string {
  const text = url.pathname + url.search;
  try {
    return decodeURIComponent(text);
  } catch {
    return text;
  }
}
