import type { Agent, AgentOptions, ClientRequest, IncomingMessage, RequestOptions } from "node:http";
import type { NetConnectOpts, Socket } from "node:net";
import { ExitCode, HomelabError, configError, dataError, notFoundError, permissionError, tempFailError } from "../errors.js";
import { replaceControl, type Logger } from "../log.js";
import type { SecretReference } from "../reference.js";
import { withRetry } from "../retry.js";
import { assertTrustedListener, isLoopbackAddress, type ListenerPolicy } from "./loopback.js";
import type { ResolveContext, Source } from "./source.js";

/**
 * The `connect` source: a self-hosted 1Password Connect server over its REST API.
 *
 *   GET /v1/vaults?filter=title eq "T"                 → vault id
 *   GET /v1/vaults/{vaultId}/items?filter=title eq "T" → item id
 *   GET /v1/vaults/{vaultId}/items/{itemId}            → full item (fields, sections)
 *
 * Names may also be IDs (26 lowercase alphanumerics): those are tried directly first, as
 * `op` does; when vault and item both look like IDs the item is fetched in one request.
 * Names match case-insensitively (1Password's reference rule): the server's exact
 * `title eq` filter is tried first, then the full list is searched. Each vault is looked up
 * once and each item fetched once per batch, concurrently. Every request is retried on
 * transient failures and bounded by its own timeout and by the run's signal.
 * Values and the token never reach logs or error messages.
 *
 * HTTP goes through node:http / node:https (whichever the host's scheme needs, imported on
 * first use) with one keep-alive agent per batch, not the global fetch: undici compiles a
 * WASM HTTP parser on its first request, about +100 ms and +38 MiB per boot-time process.
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

/** What the source needs of node:http / node:https. */
export interface HttpModule {
  readonly request: (url: URL, options: RequestOptions) => ClientRequest;
  readonly Agent: new (options: AgentOptions) => Agent;
}

/** node:https for https:// URLs, node:http otherwise; only the one needed is imported. */
export async function httpModuleFor(url: URL): Promise<HttpModule> {
  return url.protocol === "https:" ? await import("node:https") : await import("node:http");
}

// --- Connect's response shapes (only what we read) -----------------------------------------

interface ConnectVault {
  readonly id: string;
  readonly name?: string;
}
interface ConnectItemSummary {
  readonly id: string;
  readonly title?: string;
}
interface ConnectField {
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
interface ConnectItem {
  readonly id: string;
  readonly title?: string;
  readonly fields?: readonly ConnectField[];
  readonly sections?: readonly { readonly id?: string; readonly label?: string }[];
}

/** Decodes as fetch's `text()` did: UTF-8, a leading BOM dropped, bad bytes replaced. */
const utf8 = new TextDecoder("utf-8");
const idPattern = /^[a-z0-9]{26}$/;
const looksLikeId = (name: string) => idPattern.test(name);
const sameName = (a: string | undefined, b: string) => a !== undefined && a.toLowerCase() === b.toLowerCase();

/** A problem with one reference (reported per reference, aggregated over the batch). */
class ReferenceProblem extends Error {
  constructor(
    readonly kind: "missing" | "ambiguous" | "unsupported",
    message: string,
  ) {
    super(message);
  }
}

interface Response {
  readonly status: number;
  readonly body: unknown;
}

/** An HTTP answer, read in full. */
interface RawResponse {
  readonly status: number;
  readonly retryAfter: string | null;
  readonly text: string;
}

/** One batch's connection pool; the agent is destroyed when the batch ends. */
interface Session {
  readonly request: (url: URL, options: RequestOptions) => ClientRequest;
  readonly agent: Agent;
}

export function createConnectSource(options: ConnectSourceOptions): Source {
  const base = normalizeHost(options.host);
  const token = options.token.trim();
  // A token with whitespace or control characters would make the request fail with an error
  // about the header value (or be sent mangled). Refuse it here without echoing it.
  if (token.length === 0) throw configError("the 1Password Connect token is empty");
  if (!/^[\x21-\x7e]+$/.test(token)) {
    throw configError("the 1Password Connect token contains whitespace or non-ASCII characters; check the token file");
  }
  const timeoutMs = options.requestTimeoutMs ?? defaultRequestTimeoutMs;
  const maxConcurrency = Math.max(1, options.maxConcurrency ?? 16);
  const maxBytes = options.maxResponseBytes ?? defaultMaxResponseBytes;
  const limit = createLimiter(maxConcurrency);
  const display = base.origin + base.pathname.replace(/\/$/, "");
  const headers = { authorization: `Bearer ${token}`, accept: "application/json", "accept-encoding": "identity" };

  /** Scrub anything server- or network-provided before it goes into a message. */
  const scrub = (text: string) => replaceControl(text.split(token).join("[token]"), " ").slice(0, 200);

  async function openSession(log: Logger): Promise<Session> {
    const http = await httpModuleFor(base);
    const agentOptions = { keepAlive: true, maxSockets: maxConcurrency, maxFreeSockets: maxConcurrency };
    const agent = base.protocol === "http:" ? await checkedPlainAgent(http, agentOptions, listenerPolicy(), display, log) : new http.Agent(agentOptions);
    return { request: options.request ?? http.request, agent };
  }

  function listenerPolicy(): ListenerPolicy {
    const euid = process.geteuid?.() ?? 0;
    const allowed = new Set([0, euid, ...(options.listenerUid === undefined ? [] : [options.listenerUid])]);
    const names = ["root", ...(euid !== 0 ? [`this process's uid ${euid}`] : []), ...(options.listenerUid !== undefined ? [`source.listenerUser (uid ${options.listenerUid})`] : [])];
    return { allowed, describe: names.join(" or ") };
  }

  /**
   * One GET with retries. Returns 2xx and 404 (and 400 when `allowMissing`) to the caller;
   * everything else becomes a HomelabError (75 transient, 77 auth, 65/78 otherwise).
   */
  async function get(session: Session, path: string, signal: AbortSignal, log: Logger, allowMissing: boolean): Promise<Response> {
    const url = new URL(path.replace(/^\//, ""), base);
    const what = `Connect GET ${decodeForLog(url)}`;
    return withRetry(what, () => limit(() => attempt(session, url, what, signal, log, allowMissing)), {
      signal,
      log,
      ...options.retry,
    });
  }

  async function attempt(session: Session, url: URL, what: string, signal: AbortSignal, log: Logger, allowMissing: boolean): Promise<Response> {
    const started = performance.now();
    const response = await send(session, url, what, signal);
    const { status, text } = response;
    log.debug(`${what} → ${status} (${Math.round(performance.now() - started)} ms)`);

    if (status >= 200 && status < 300) return { status, body: parseJson(text, what) };
    if (status === 404 || (allowMissing && status === 400)) return { status, body: undefined };
    const message = serverMessage(text);
    const detail = message ? `: ${scrub(message)}` : "";
    if (status === 401) throw permissionError(`Connect rejected the token (HTTP 401${detail}); check the op-connect-token credential`);
    if (status === 403) {
      throw permissionError(`Connect rejected the token for ${what.slice("Connect GET ".length)} (HTTP 403${detail}); does the token have access to this vault?`);
    }
    if (status === 408 || status === 425 || status === 429 || status >= 500) {
      const retryAfterMs = parseRetryAfter(response.retryAfter);
      const hint = retryAfterMs === undefined ? "" : ` (Retry-After ${Math.ceil(retryAfterMs / 1000)}s)`;
      throw tempFailError(`${what}: HTTP ${status}${detail}${hint}`, retryAfterMs === undefined ? {} : { retryAfterMs });
    }
    if (status >= 300 && status < 400) {
      throw configError(`${what}: the Connect server at ${display} answered with a redirect (HTTP ${status}); set the host to the final URL`);
    }
    throw dataError(`${what}: the Connect server refused the request (HTTP ${status}${detail})`);
  }

  /**
   * Send one GET and read the whole answer. Bounded by the per-request timeout and the run's
   * signal: either destroys the request. Network failures and timeouts are transient (75);
   * an answer over the size limit is refused (65). Redirects are not followed.
   */
  function send(session: Session, url: URL, what: string, signal: AbortSignal): Promise<RawResponse> {
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
          return finish(tempFailError(`${what}: no answer from the Connect server within ${Math.round(timeoutMs / 100) / 10}s`));
        }
        finish(tempFailError(`${what}: cannot reach the Connect server at ${display} (${scrub(networkReason(error))})`));
      };
      const tooLarge = () =>
        finish(dataError(`${what}: the server's answer is larger than ${Math.round(maxBytes / 1024)} KiB; is the host a 1Password Connect server?`));
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
          finish(undefined, { status: response.statusCode ?? 0, retryAfter: retryAfter ?? null, text: utf8.decode(Buffer.concat(chunks, size)) });
        });
        response.on("error", fail);
        response.on("close", () => {
          if (!response.complete) fail(Object.assign(new Error("connection closed before the answer was complete"), { code: "ECONNRESET" }));
        });
      };

      try {
        request = session.request(url, { method: "GET", headers, agent: session.agent });
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
    name: "connect",
    async resolveAll(refs: readonly SecretReference[], context: ResolveContext): Promise<Map<string, string>> {
      const { log } = context;
      const result = new Map<string, string>();
      if (refs.length === 0) return result;
      const session = await openSession(log);
      try {
        return await resolveBatch(session, refs, context.signal, log, result);
      } finally {
        // Close the keep-alive sockets so nothing holds the process open.
        session.agent.destroy();
      }
    },
  };

  async function resolveBatch(
    session: Session,
    refs: readonly SecretReference[],
    runSignal: AbortSignal,
    log: Logger,
    result: Map<string, string>,
  ): Promise<Map<string, string>> {
    // A bad token fails every request: stop the rest of the batch at once instead of
    // letting slower requests run through their retries.
    const stop = new AbortController();
    const signal = AbortSignal.any([runSignal, stop.signal]);
    const fatal = (error: unknown): never => {
      if (error instanceof HomelabError && error.exitCode === ExitCode.noPerm && !stop.signal.aborted) stop.abort(error);
      throw error;
    };
    const itemPath = (vaultId: string, itemId: string) => `/v1/vaults/${enc(vaultId)}/items/${enc(itemId)}`;

    const vaults = new Map<string, Promise<string>>(); // name (lowercase) → vault id
    const itemIds = new Map<string, Promise<string>>(); // vaultId + item name (lowercase) → item id
    const items = new Map<string, Promise<ConnectItem>>(); // vaultId/itemId → full item
    const probes = new Map<string, Promise<ConnectItem | undefined>>(); // vault/item as written → item

    const fetchItem = (vaultId: string, itemId: string, known?: ConnectItem): Promise<ConnectItem> => {
      const key = `${vaultId}/${itemId}`;
      let pending = items.get(key);
      if (!pending) {
        const fresh = () =>
          get(session, itemPath(vaultId, itemId), signal, log, false).then((response) => {
            if (response.status === 404) throw new ReferenceProblem("missing", "item not found (deleted while resolving?)");
            return asItem(response.body);
          }, fatal);
        const probe = probes.get(key);
        pending = known ? Promise.resolve(known) : probe ? probe.then((item) => item ?? fresh()) : fresh();
        items.set(key, pending);
      }
      return pending;
    };

    /**
     * Names that look like IDs: GET the item by vault and item ID, once per pair. Undefined
     * when the server has no such pair (then the names are looked up as titles).
     */
    const probeItem = (vaultId: string, itemId: string): Promise<ConnectItem | undefined> => {
      const key = `${vaultId}/${itemId}`;
      let pending = probes.get(key);
      if (!pending) {
        pending = get(session, itemPath(vaultId, itemId), signal, log, true).then((response) => {
          if (response.status >= 300) return undefined;
          const item = asItem(response.body);
          void fetchItem(vaultId, item.id, item); // keep it so it is not fetched again
          return item;
        }, fatal);
        probes.set(key, pending);
      }
      return pending;
    };

    const lookupVault = (name: string): Promise<string> => {
      const key = name.toLowerCase();
      let pending = vaults.get(key);
      if (!pending) {
        pending = findVault(name).catch(fatal);
        vaults.set(key, pending);
      }
      return pending;
    };

    const findVault = async (name: string): Promise<string> => {
      if (looksLikeId(name)) {
        const response = await get(session, `/v1/vaults/${enc(name)}`, signal, log, true);
        if (response.status < 300) return asObject<ConnectVault>(response.body, "vault").id;
      }
      const listVaults = async (path: string) => {
        const response = await get(session, path, signal, log, false);
        if (response.status === 404) {
          throw configError(`the server at ${display} has no /v1/vaults endpoint; is the host a 1Password Connect server (and its URL right)?`);
        }
        return asArray<ConnectVault>(response.body, "vault list");
      };
      let matches = pickByName(await listVaults(`/v1/vaults?filter=${enc(titleFilter(name))}`), (v) => v.name, name);
      if (matches.length === 0) matches = pickByName(await listVaults("/v1/vaults"), (v) => v.name, name);
      const [first, second] = matches;
      if (!first) throw new ReferenceProblem("missing", `vault "${name}" not found (or the Connect token cannot see it)`);
      if (second) throw new ReferenceProblem("ambiguous", `more than one vault is named "${name}"; use the vault's ID`);
      return first.id;
    };

    const lookupItem = (vaultId: string, vaultName: string, name: string): Promise<ConnectItem> => {
      const key = `${vaultId}/${name.toLowerCase()}`;
      let pending = itemIds.get(key);
      if (!pending) {
        pending = findItemId(vaultId, vaultName, name).catch(fatal);
        itemIds.set(key, pending);
      }
      return pending.then((itemId) => fetchItem(vaultId, itemId));
    };

    const findItemId = async (vaultId: string, vaultName: string, name: string): Promise<string> => {
      if (looksLikeId(name)) {
        // One request gives the full item (kept by probeItem so it is not fetched again).
        const item = await probeItem(vaultId, name);
        if (item) return item.id;
      }
      const itemsPath = `/v1/vaults/${enc(vaultId)}/items`;
      const listItems = async (path: string) => {
        const response = await get(session, path, signal, log, false);
        if (response.status === 404) throw new ReferenceProblem("missing", `vault "${vaultName}" not found (it disappeared while resolving)`);
        return asArray<ConnectItemSummary>(response.body, "item list");
      };
      let matches = pickByName(await listItems(`${itemsPath}?filter=${enc(titleFilter(name))}`), (i) => i.title, name);
      if (matches.length === 0) matches = pickByName(await listItems(itemsPath), (i) => i.title, name);
      const [first, second] = matches;
      if (!first) throw new ReferenceProblem("missing", `item "${name}" not found in vault "${vaultName}"`);
      if (second) throw new ReferenceProblem("ambiguous", `more than one item in vault "${vaultName}" is named "${name}"; use the item's ID`);
      return first.id;
    };

    const resolveOne = async (ref: SecretReference): Promise<string> => {
      if (looksLikeId(ref.vault) && looksLikeId(ref.item)) {
        // Both IDs: one request instead of two in sequence; titles only if that finds nothing.
        const item = await probeItem(ref.vault, ref.item);
        if (item) return pickValue(item, ref);
      }
      const vaultId = await lookupVault(ref.vault);
      const item = await lookupItem(vaultId, ref.vault, ref.item);
      return pickValue(item, ref);
    };

    const outcomes = await Promise.allSettled(refs.map(resolveOne));

    const problems: { ref: SecretReference; problem: ReferenceProblem }[] = [];
    let firstFatal: unknown;
    outcomes.forEach((outcome, index) => {
      const ref = refs[index]!;
      if (outcome.status === "fulfilled") result.set(ref.raw, outcome.value);
      else if (outcome.reason instanceof ReferenceProblem) problems.push({ ref, problem: outcome.reason });
      else if (firstFatal === undefined || rank(outcome.reason) < rank(firstFatal)) firstFatal = outcome.reason;
    });
    // eslint-disable-next-line @typescript-eslint/only-throw-error -- rethrows a rejection reason unchanged (a HomelabError or an internal error)
    if (firstFatal !== undefined) throw firstFatal;
    if (problems.length > 0) throw aggregate(problems);
    return result;
  }
}

/** Permission problems first (the cause), then the run's own abort, then anything else. */
function rank(error: unknown): number {
  if (error instanceof HomelabError) {
    if (error.exitCode === ExitCode.noPerm) return 0;
    if (error.exitCode === ExitCode.config) return 1;
    if (error.exitCode === ExitCode.tempFail) return 3;
    return 2;
  }
  return 4;
}

function aggregate(problems: readonly { ref: SecretReference; problem: ReferenceProblem }[]): HomelabError {
  const describe = (list: typeof problems) => list.map(({ ref, problem }) => `${ref.raw} (${problem.message})`).join("; ");
  const missing = problems.filter((p) => p.problem.kind === "missing");
  const other = problems.filter((p) => p.problem.kind !== "missing");
  if (missing.length > 0) {
    const also = other.length > 0 ? `; also unusable: ${describe(other)}` : "";
    const noun = missing.length === 1 ? "reference" : "references";
    return notFoundError(`1Password Connect: ${missing.length} ${noun} not found: ${describe(missing)}${also}`);
  }
  const noun = other.length === 1 ? "reference" : "references";
  return dataError(`1Password Connect: ${other.length} ${noun} cannot be resolved: ${describe(other)}`);
}

/** The field a reference points at, by id or label (case-insensitive), within its section if given. */
function pickValue(item: ConnectItem, ref: SecretReference): string {
  const fields = item.fields ?? [];
  const sections = item.sections ?? [];
  let candidates = fields;
  if (ref.section !== undefined) {
    const wanted = ref.section;
    const sectionIds = new Set(
      sections.filter((s) => s.id === wanted || sameName(s.label, wanted) || sameName(s.id, wanted)).map((s) => s.id),
    );
    if (sectionIds.size === 0) throw new ReferenceProblem("missing", `section "${wanted}" not found in item "${ref.item}"`);
    candidates = fields.filter((f) => f.section?.id !== undefined && sectionIds.has(f.section.id));
  }
  // An exact ID wins (IDs are unique); otherwise labels, case-insensitively.
  let matches = candidates.filter((f) => f.id === ref.field);
  if (matches.length === 0) matches = candidates.filter((f) => sameName(f.label, ref.field) || sameName(f.id, ref.field));
  const where = ref.section === undefined ? `item "${ref.item}"` : `section "${ref.section}" of item "${ref.item}"`;
  const [field, second] = matches;
  if (!field) throw new ReferenceProblem("missing", `field "${ref.field}" not found in ${where}`);
  if (second) {
    const hint = ref.section === undefined ? "; add the section to the reference or use the field's ID" : "; use the field's ID";
    throw new ReferenceProblem("ambiguous", `tooManyMatchingFields: ${matches.length} fields named "${ref.field}" in ${where}${hint}`);
  }

  if (ref.attribute !== undefined) {
    if (field.type !== "OTP") {
      throw new ReferenceProblem("unsupported", `?attribute=${ref.attribute} needs a one-time password field, but "${ref.field}" is of type ${field.type ?? "unknown"}`);
    }
    if (typeof field.totp !== "string" || field.totp.length === 0) {
      throw new ReferenceProblem("unsupported", `the Connect server returned no current code for one-time password field "${ref.field}"`);
    }
    return field.totp;
  }
  if (ref.sshFormat !== undefined) {
    const value = field.value ?? "";
    const offered = field.ssh_formats?.openssh?.value;
    if (typeof offered === "string" && offered.length > 0) return offered;
    if (value.startsWith("-----BEGIN OPENSSH PRIVATE KEY-----")) return value;
    throw new ReferenceProblem(
      "unsupported",
      field.type === "SSHKEY"
        ? "?ssh-format=openssh: the Connect server returns this key only in PKCS#8 form and does not offer OpenSSH format; drop ?ssh-format=openssh to get the PKCS#8 key, or use the onepassword source"
        : `?ssh-format=openssh needs an SSH key field, but "${ref.field}" is of type ${field.type ?? "unknown"}`,
    );
  }
  return field.value ?? "";
}

// --- helpers -----------------------------------------------------------------------------

/**
 * An agent for plain http whose sockets are handed to a request only once connected and
 * checked: on loopback, the server's owner (assertTrustedListener) before a single byte,
 * and so the token, is written; elsewhere a warning, once, that the token crosses the
 * network unencrypted.
 */
async function checkedPlainAgent(http: HttpModule, agentOptions: AgentOptions, policy: ListenerPolicy, display: string, log: Logger): Promise<Agent> {
  const net = await import("node:net");
  let warned = false;
  const agent = new http.Agent(agentOptions);
  type Callback = (error: Error | null, socket?: Socket) => void;
  (agent as unknown as { createConnection: (o: NetConnectOpts, cb: Callback) => undefined }).createConnection = (connectOptions, callback) => {
    const socket = net.connect(connectOptions);
    const onError = (error: Error) => callback(error);
    socket.once("error", onError);
    socket.once("connect", () => {
      const server = { address: socket.remoteAddress ?? "", port: socket.remotePort ?? 0 };
      const client = { address: socket.localAddress ?? "", port: socket.localPort ?? 0 };
      if (!isLoopbackAddress(server.address)) {
        if (!warned) log.warn(`the Connect host ${display} is plain http on a non-loopback address (${server.address}): the token and every value cross the network unencrypted; use https`);
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

const enc = encodeURIComponent;

/** Connect's SCIM-style filter; names cannot contain quotes (reference.ts), escape anyway. */
function titleFilter(name: string): string {
  return `title eq "${name.replace(/["\\]/g, (c) => `\\${c}`)}"`;
}

/** Exact-case matches win; otherwise case-insensitive ones (1Password names are case-insensitive). */
function pickByName<T>(list: readonly T[], nameOf: (entry: T) => string | undefined, name: string): T[] {
  const exact = list.filter((entry) => nameOf(entry) === name);
  return exact.length > 0 ? exact : list.filter((entry) => sameName(nameOf(entry), name));
}

function parseJson(text: string, what: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    // Never pass the parser's message on: it quotes the body, which may hold values.
    throw dataError(`${what}: the server's answer is not JSON; is the host a 1Password Connect server?`);
  }
}

function asArray<T extends { id: string }>(body: unknown, what: string): T[] {
  if (!Array.isArray(body)) throw dataError(`Connect returned an unexpected ${what} (not a list)`);
  return body.filter((entry): entry is T => typeof entry === "object" && entry !== null && typeof (entry as { id?: unknown }).id === "string");
}

function asObject<T extends { id: string }>(body: unknown, what: string): T {
  if (typeof body !== "object" || body === null || typeof (body as { id?: unknown }).id !== "string") {
    throw dataError(`Connect returned an unexpected ${what} (no id)`);
  }
  return body as T;
}

function asItem(body: unknown): ConnectItem {
  const item = asObject<ConnectItem>(body, "item");
  if (item.fields !== undefined && !Array.isArray(item.fields)) throw dataError("Connect returned an unexpected item (fields is not a list)");
  if (item.sections !== undefined && item.sections !== null && !Array.isArray(item.sections)) {
    throw dataError("Connect returned an unexpected item (sections is not a list)");
  }
  return item;
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

/** Retry-After is either delta-seconds or an HTTP date. */
export function parseRetryAfter(header: string | null, now = Date.now()): number | undefined {
  if (header === null) return undefined;
  const text = header.trim();
  if (/^\d+$/.test(text)) return Number(text) * 1000;
  const at = Date.parse(text);
  if (Number.isNaN(at)) return undefined;
  return Math.max(0, at - now);
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

function decodeForLog(url: URL): string {
  const text = url.pathname + url.search;
  try {
    return decodeURIComponent(text);
  } catch {
    return text;
  }
}

/** At most `max` operations at once; a finishing operation hands its slot to the next waiter. */
function createLimiter(max: number): <T>(operation: () => Promise<T>) => Promise<T> {
  let active = 0;
  const waiting: (() => void)[] = [];
  const acquire = (): Promise<void> => {
    if (active < max) {
      active += 1;
      return Promise.resolve();
    }
    return new Promise<void>((resolve) => waiting.push(resolve));
  };
  const release = () => {
    const next = waiting.shift();
    if (next) next();
    else active -= 1;
  };
  return async (operation) => {
    await acquire();
    try {
      return await operation();
    } finally {
      release();
    }
  };
}
