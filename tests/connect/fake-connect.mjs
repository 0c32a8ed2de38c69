#!/usr/bin/env node
// A protocol-faithful local 1Password Connect server for tests, the nspawn end-to-end suite
// and benchmarks. Plain ESM JavaScript (JSDoc types) so it runs with bare `node`.
//
// It serves, from a vault JSON in the project's file-vault format
//   {"vaults":{"V":{"items":{"I":{"fields":{"f":"v"},"sections":{"S":{"f":"v"}}}}}}}
// the three endpoints the helper uses, with Connect's response shapes:
//   GET /v1/vaults[?filter=title eq "T"]                 → [vault]
//   GET /v1/vaults/{vaultId}                             → vault
//   GET /v1/vaults/{vaultId}/items[?filter=title eq "T"] → [item summary]
//   GET /v1/vaults/{vaultId}/items/{itemId}              → full item (fields, sections)
//   GET /heartbeat                                       → "." (no auth, like Connect)
// Errors use Connect's body shape {"status":N,"message":"…"}. The title filter is matched
// exactly (case-sensitive); clients that want 1Password's case-insensitive names must cope.
//
// Fault injection (per path or global, consumed in order): an HTTP status N times (e.g. 503,
// 429 with Retry-After), a socket reset, a request that is never answered, extra latency.
// Every request is logged (method, path, query, start/end times, status, fault) for assertions.
//
// Run directly:
//   node tests/connect/fake-connect.mjs --vault FILE --token-file FILE [--port N]
//        [--host 127.0.0.1] [--latency MS] [--faults FILE.json]
// prints the base URL on stdout and serves until SIGTERM/SIGINT.

import { createHash, createHmac } from "node:crypto";
import { readFileSync } from "node:fs";
import { createServer } from "node:http";
import { performance } from "node:perf_hooks";
import { pathToFileURL } from "node:url";
import { parseArgs } from "node:util";

/**
 * @typedef {{ vaults: Record<string, { items?: Record<string, FileItem> }> }} FileVault
 * @typedef {{ fields?: Record<string, unknown>, sections?: Record<string, Record<string, unknown>> }} FileItem
 *
 * @typedef {object} ConnectField
 * @property {string} id
 * @property {string} type      STRING | CONCEALED | OTP | SSHKEY | …
 * @property {string} [purpose] USERNAME | PASSWORD | NOTES
 * @property {string} label
 * @property {string} [value]
 * @property {{ id: string }} [section]
 * @property {string} [totp]    current code, OTP fields only
 *
 * @typedef {object} ConnectItem
 * @property {string} id
 * @property {string} title
 * @property {number} version
 * @property {{ id: string }} vault
 * @property {string} category
 * @property {string} lastEditedBy
 * @property {string} createdAt
 * @property {string} updatedAt
 * @property {{ id: string, label: string }[]} sections
 * @property {ConnectField[]} fields
 *
 * @typedef {object} FaultBase
 * @property {string | RegExp} [match] string: the request path starts with it; RegExp: tested
 *   against the decoded path + query. Absent: every request.
 * @property {string} [method] only this method (default: any)
 * @property {number} [times] how many matching requests it applies to (default: unlimited)
 * @property {boolean} [regex] in a --faults JSON file: treat `match` as a regular expression
 *
 * @typedef {FaultBase & { type: "status", status: number, retryAfter?: string | number, body?: unknown }} StatusFault
 * @typedef {FaultBase & { type: "reset" }} ResetFault     destroy the socket, no response
 * @typedef {FaultBase & { type: "hang" }} HangFault       never answer (until close())
 * @typedef {FaultBase & { type: "latency", ms: number }} LatencyFault  delay, then answer normally
 * @typedef {StatusFault | ResetFault | HangFault | LatencyFault} Fault
 *
 * @typedef {object} RequestRecord
 * @property {number} seq
 * @property {string} method
 * @property {string} path       decoded pathname
 * @property {string} search     decoded query string ("" or "?…")
 * @property {Record<string, string>} query
 * @property {boolean} authorized
 * @property {number} start      ms (performance.now) when the request arrived
 * @property {number | undefined} end    ms when the response finished or the socket closed
 * @property {number | undefined} status
 * @property {string | undefined} fault  the fault applied, if any
 *
 * @typedef {object} FakeConnectOptions
 * @property {FileVault} [vault]     the vault data (or vaultFile)
 * @property {string} [vaultFile]
 * @property {string} token          the bearer token to accept
 * @property {number} [port]         default 0 (random)
 * @property {string} [host]         default 127.0.0.1
 * @property {number} [latencyMs]    added to every request
 * @property {Fault[]} [faults]
 * @property {(item: ConnectItem) => ConnectItem | void} [mutateItem] edit full items (tests: odd shapes)
 * @property {() => number} [now]    clock for TOTP codes (ms since epoch)
 * @property {(seen: { method: string, path: string, authorization: boolean }) => void} [onRequest] told of every request as it arrives
 *
 * @typedef {object} FakeConnect
 * @property {string} url            base URL, no trailing slash
 * @property {number} port
 * @property {RequestRecord[]} requests
 * @property {{ vaults: Record<string, string>, items: Record<string, Record<string, string>>, sections: Record<string, Record<string, Record<string, string>>> }} ids
 *   vault name → id; vault name → item title → id; vault → item → section label → id
 * @property {(faults: Fault[]) => void} setFaults  replace the fault script
 * @property {(ms: number) => void} setLatency
 * @property {() => void} clearRequests
 * @property {(path: string | RegExp) => RequestRecord[]} requestsTo
 * @property {() => Promise<void>} close
 */

const alphabet = "abcdefghijklmnopqrstuvwxyz234567";

/** A stable 26-character lowercase id (like 1Password's) derived from `parts`. */
export function stableId(...parts) {
  const digest = createHash("sha256").update(parts.join("\u0000")).digest();
  let out = "";
  for (let i = 0; i < 26; i++) out += alphabet[/** @type {number} */ (digest[i]) % 32];
  return out;
}

/** RFC 6238 TOTP for an otpauth:// URI or a bare base32 secret. */
export function totp(uriOrSecret, nowMs = Date.now()) {
  let secret = uriOrSecret;
  let digits = 6;
  let period = 30;
  let algorithm = "sha1";
  if (uriOrSecret.startsWith("otpauth://")) {
    const url = new URL(uriOrSecret);
    secret = url.searchParams.get("secret") ?? "";
    digits = Number(url.searchParams.get("digits") ?? 6);
    period = Number(url.searchParams.get("period") ?? 30);
    algorithm = (url.searchParams.get("algorithm") ?? "SHA1").toLowerCase();
  }
  const key = base32Decode(secret);
  const counter = Math.floor(nowMs / 1000 / period);
  const message = Buffer.alloc(8);
  message.writeBigUInt64BE(BigInt(counter));
  const mac = createHmac(algorithm, key).update(message).digest();
  const offset = /** @type {number} */ (mac[mac.length - 1]) & 0x0f;
  const binary = mac.readUInt32BE(offset) & 0x7fffffff;
  return String(binary % 10 ** digits).padStart(digits, "0");
}

function base32Decode(text) {
  const clean = text.toUpperCase().replace(/[\s=-]/g, "");
  const table = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
  let bits = 0;
  let value = 0;
  const out = [];
  for (const char of clean) {
    const index = table.indexOf(char);
    if (index < 0) throw new Error("bad base32 in TOTP secret");
    value = (value << 5) | index;
    bits += 5;
    if (bits >= 8) {
      out.push((value >>> (bits - 8)) & 0xff);
      bits -= 8;
    }
  }
  return Buffer.from(out);
}

const epoch = "2024-01-01T00:00:00Z";

/**
 * Turn the file-vault JSON into Connect's model. Built-in names get Connect's built-in ids
 * (username, password, notesPlain); other fields get stable 26-char ids.
 * @param {FileVault} data
 */
export function buildModel(data) {
  if (!data || typeof data !== "object" || typeof data.vaults !== "object" || data.vaults === null) {
    throw new Error('vault JSON must look like {"vaults":{"V":{"items":{…}}}}');
  }
  /** @type {Map<string, { id: string, name: string, items: Map<string, ConnectItem> }>} */
  const vaults = new Map();
  /** @type {FakeConnect["ids"]} */
  const ids = { vaults: {}, items: {}, sections: {} };
  for (const [vaultName, vault] of Object.entries(data.vaults)) {
    const vaultId = stableId("vault", vaultName);
    ids.vaults[vaultName] = vaultId;
    ids.items[vaultName] = {};
    ids.sections[vaultName] = {};
    /** @type {Map<string, ConnectItem>} */
    const items = new Map();
    for (const [title, item] of Object.entries(vault?.items ?? {})) {
      const itemId = stableId("item", vaultName, title);
      ids.items[vaultName][title] = itemId;
      /** @type {Record<string, string>} */
      const sectionIds = {};
      ids.sections[vaultName][title] = sectionIds;
      /** @type {ConnectField[]} */
      const fields = [];
      /** @type {{ id: string, label: string }[]} */
      const sections = [];
      let category = "SECURE_NOTE";
      for (const [label, value] of Object.entries(item?.fields ?? {})) {
        const field = makeField(vaultName, title, undefined, label, String(value));
        if (field.purpose === "PASSWORD") category = "LOGIN";
        fields.push(field);
      }
      for (const [sectionLabel, sectionFields] of Object.entries(item?.sections ?? {})) {
        const sectionId = stableId("section", vaultName, title, sectionLabel);
        sectionIds[sectionLabel] = sectionId;
        sections.push({ id: sectionId, label: sectionLabel });
        for (const [label, value] of Object.entries(sectionFields ?? {})) {
          fields.push(makeField(vaultName, title, sectionId, label, String(value)));
        }
      }
      items.set(itemId, {
        id: itemId,
        title,
        version: 1,
        vault: { id: vaultId },
        category,
        lastEditedBy: stableId("user", "fake-connect"),
        createdAt: epoch,
        updatedAt: epoch,
        sections,
        fields,
      });
    }
    vaults.set(vaultId, { id: vaultId, name: vaultName, items });
  }
  return { vaults, ids };
}

/** @returns {ConnectField} */
function makeField(vaultName, itemTitle, sectionId, label, value) {
  /** @type {ConnectField} */
  const field = { id: stableId("field", vaultName, itemTitle, sectionId ?? "", label), type: "CONCEALED", label, value };
  if (sectionId === undefined) {
    if (label === "username") Object.assign(field, { id: "username", type: "STRING", purpose: "USERNAME" });
    else if (label === "password") Object.assign(field, { id: "password", type: "CONCEALED", purpose: "PASSWORD" });
    else if (label === "notesPlain" || label === "notes") Object.assign(field, { id: "notesPlain", type: "STRING", purpose: "NOTES" });
  } else {
    field.section = { id: sectionId };
  }
  if (value.startsWith("otpauth://")) field.type = "OTP";
  else if (/^-----BEGIN (OPENSSH |RSA |EC )?PRIVATE KEY-----/.test(value)) field.type = "SSHKEY";
  return field;
}

/** Parse Connect's `title eq "X"` filter; undefined when absent, null when unsupported. */
function parseFilter(filter) {
  if (filter === null) return undefined;
  const match = /^\s*title\s+eq\s+"((?:[^"\\]|\\.)*)"\s*$/.exec(filter);
  if (!match) return null;
  return /** @type {string} */ (match[1]).replace(/\\(.)/g, "$1");
}

/**
 * Start the server. Resolves once it is listening.
 * @param {FakeConnectOptions} options
 * @returns {Promise<FakeConnect>}
 */
export async function startFakeConnect(options) {
  const data = options.vault ?? JSON.parse(readFileSync(/** @type {string} */ (options.vaultFile), "utf8"));
  const { vaults, ids } = buildModel(data);
  const token = options.token;
  if (typeof token !== "string" || token.length === 0) throw new Error("fake-connect: a token is required");
  const now = options.now ?? Date.now;
  let latencyMs = options.latencyMs ?? 0;
  /** @type {(Fault & { left: number })[]} */
  let faults = [];
  /** @type {RequestRecord[]} */
  const requests = [];
  /** @type {Set<import("node:http").ServerResponse>} */
  const hanging = new Set();
  let seq = 0;

  const setFaults = (/** @type {Fault[]} */ list) => {
    faults = list.map((fault) => ({ ...fault, left: fault.times ?? Infinity }));
  };
  setFaults(options.faults ?? []);

  /** @param {RequestRecord} record */
  const takeFault = (record) => {
    for (const fault of faults) {
      if (fault.left <= 0) continue;
      if (fault.method && fault.method.toUpperCase() !== record.method) continue;
      if (fault.match !== undefined) {
        const ok = typeof fault.match === "string" ? record.path.startsWith(fault.match) : fault.match.test(record.path + record.search);
        if (!ok) continue;
      }
      fault.left -= 1;
      return fault;
    }
    return undefined;
  };

  const server = createServer((req, res) => {
    const url = new URL(req.url ?? "/", "http://fake-connect");
    /** @type {RequestRecord} */
    const record = {
      seq: ++seq,
      method: req.method ?? "GET",
      path: safeDecode(url.pathname),
      search: safeDecode(url.search.replace(/\+/g, " ")),
      query: Object.fromEntries(url.searchParams),
      authorized: req.headers.authorization === `Bearer ${token}`,
      start: performance.now(),
      end: undefined,
      status: undefined,
      fault: undefined,
    };
    requests.push(record);
    options.onRequest?.({ method: record.method, path: record.path, authorization: req.headers.authorization !== undefined });
    const finish = () => {
      if (record.end === undefined) record.end = performance.now();
    };
    res.on("finish", finish);
    res.on("close", finish);

    const send = (/** @type {number} */ status, /** @type {unknown} */ body, /** @type {Record<string, string>} */ headers = {}) => {
      if (res.destroyed) return;
      record.status = status;
      const text = typeof body === "string" ? body : JSON.stringify(body);
      res.writeHead(status, {
        "content-type": typeof body === "string" ? "text/plain" : "application/json",
        "content-length": Buffer.byteLength(text),
        ...headers,
      });
      res.end(text);
    };
    const error = (/** @type {number} */ status, /** @type {string} */ message) => send(status, { status, message });

    const handle = () => {
      const fault = takeFault(record);
      if (fault) {
        record.fault = fault.type === "status" ? `status ${fault.status}` : fault.type;
        switch (fault.type) {
          case "reset":
            req.socket.destroy();
            return;
          case "hang":
            hanging.add(res);
            res.on("close", () => hanging.delete(res));
            return;
          case "latency":
            setTimeout(answer, fault.ms);
            return;
          case "status": {
            /** @type {Record<string, string>} */
            const headers = {};
            if (fault.retryAfter !== undefined) headers["retry-after"] = String(fault.retryAfter);
            send(fault.status, fault.body ?? { status: fault.status, message: statusText(fault.status) }, headers);
            return;
          }
        }
      }
      answer();
    };

    const answer = () => {
      if (res.destroyed) return;
      if (record.method === "GET" && record.path === "/heartbeat") return send(200, ".");
      if (!record.authorized) return error(401, "Invalid token signature");
      if (record.method !== "GET") return error(405, "Method not allowed");
      const parts = record.path.split("/").filter(Boolean);
      if (parts[0] !== "v1" || parts[1] !== "vaults") return error(404, "Not found");
      if (parts.length === 2) {
        const title = parseFilter(url.searchParams.get("filter"));
        if (title === null) return error(400, "Invalid filter query");
        const list = [...vaults.values()].filter((v) => title === undefined || v.name === title).map(vaultJson);
        return send(200, list);
      }
      const vault = vaults.get(/** @type {string} */ (parts[2]));
      if (!vault) return error(404, "Invalid Vault UUID");
      if (parts.length === 3) return send(200, vaultJson(vault));
      if (parts[3] !== "items") return error(404, "Not found");
      if (parts.length === 4) {
        const title = parseFilter(url.searchParams.get("filter"));
        if (title === null) return error(400, "Invalid filter query");
        const list = [...vault.items.values()].filter((i) => title === undefined || i.title === title).map(summaryJson);
        return send(200, list);
      }
      if (parts.length === 5) {
        const item = vault.items.get(/** @type {string} */ (parts[4]));
        if (!item) return error(404, "item not found");
        /** @type {ConnectItem} */
        let full = structuredClone(item);
        for (const field of full.fields) if (field.type === "OTP" && field.value) field.totp = totp(field.value, now());
        if (options.mutateItem) full = options.mutateItem(full) ?? full;
        return send(200, full);
      }
      return error(404, "Not found");
    };

    const delay = latencyMs;
    if (delay > 0) setTimeout(handle, delay);
    else handle();
  });
  server.keepAliveTimeout = 5000;

  await new Promise((resolve, reject) => {
    server.once("error", reject);
    server.listen(options.port ?? 0, options.host ?? "127.0.0.1", () => {
      server.off("error", reject);
      resolve(undefined);
    });
  });
  const address = server.address();
  if (address === null || typeof address === "string") throw new Error("fake-connect: no TCP address");
  const host = address.family === "IPv6" ? `[${address.address}]` : address.address;

  return {
    url: `http://${host}:${address.port}`,
    port: address.port,
    requests,
    ids,
    setFaults,
    setLatency(ms) {
      latencyMs = ms;
    },
    clearRequests() {
      requests.length = 0;
    },
    requestsTo(path) {
      return requests.filter((r) => (typeof path === "string" ? r.path === path : path.test(r.path + r.search)));
    },
    close() {
      for (const res of hanging) res.destroy();
      hanging.clear();
      return new Promise((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      });
    },
  };
}

function vaultJson(vault) {
  return {
    id: vault.id,
    name: vault.name,
    attributeVersion: 1,
    contentVersion: vault.items.size + 1,
    items: vault.items.size,
    type: "USER_CREATED",
    createdAt: epoch,
    updatedAt: epoch,
  };
}

/** @param {ConnectItem} item */
function summaryJson(item) {
  const { fields: _fields, sections: _sections, ...summary } = item;
  return summary;
}

function safeDecode(text) {
  try {
    return decodeURIComponent(text);
  } catch {
    return text;
  }
}

function statusText(status) {
  return (
    {
      400: "Bad Request",
      401: "Unauthorized",
      403: "Forbidden",
      404: "Not Found",
      429: "Too Many Requests",
      500: "Internal Server Error",
      502: "Bad Gateway",
      503: "Service Unavailable",
      504: "Gateway Timeout",
    }[status] ?? "Error"
  );
}

async function main() {
  const { values } = parseArgs({
    options: {
      vault: { type: "string" },
      port: { type: "string", default: "0" },
      host: { type: "string", default: "127.0.0.1" },
      "token-file": { type: "string" },
      latency: { type: "string", default: "0" },
      faults: { type: "string" },
      "log-requests": { type: "boolean", default: false },
      help: { type: "boolean", short: "h" },
    },
  });
  if (values.help || !values.vault || !values["token-file"]) {
    process.stderr.write(
      "usage: node fake-connect.mjs --vault FILE --token-file FILE [--port N] [--host ADDR] [--latency MS] [--faults FILE.json] [--log-requests]\n",
    );
    process.exit(values.help ? 0 : 64);
  }
  const token = readFileSync(values["token-file"], "utf8").trim();
  /** @type {Fault[]} */
  const faults = values.faults
    ? JSON.parse(readFileSync(values.faults, "utf8")).map((f) =>
        f.regex === true && typeof f.match === "string" ? { ...f, match: new RegExp(f.match) } : f,
      )
    : [];
  const fake = await startFakeConnect({
    vaultFile: values.vault,
    token,
    port: Number(values.port),
    host: values.host,
    latencyMs: Number(values.latency),
    faults,
    // One JSON line per request on stdout (never the header's value): what a test running
    // the server as another user can see of it.
    ...(values["log-requests"] ? { onRequest: (seen) => process.stdout.write(`${JSON.stringify(seen)}\n`) } : {}),
  });
  process.stdout.write(`${fake.url}\n`);
  process.stderr.write(`fake-connect: listening on ${fake.url}\n`);
  const stop = () => {
    void fake.close().then(() => process.exit(0));
  };
  process.on("SIGTERM", stop);
  process.on("SIGINT", stop);
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  main().catch((error) => {
    process.stderr.write(`fake-connect: ${error instanceof Error ? error.message : String(error)}\n`);
    process.exit(1);
  });
}
