import { existsSync, readFileSync } from "node:fs";
import { readFile } from "node:fs/promises";
import { endianness } from "node:os";
import { permissionError } from "../errors.js";

/**
 * Who owns a loopback TCP server: the only guard plain http has on one host. While Connect
 * is down (restarting, not yet up at boot) any local user can bind its port and would be
 * sent the token, and could answer with forged values. Before a request goes out on a
 * connection to 127.0.0.0/8 or ::1, the kernel's socket tables (/proc/net/tcp, tcp6) say
 * which uid listens on that address and port, and which one holds the accepted end.
 */

/** One row of /proc/net/tcp{,6}: addresses in the canonical form of {@link canonicalAddress}. */
export interface SocketEntry {
  readonly local: string;
  readonly localPort: number;
  readonly remote: string;
  readonly remotePort: number;
  /** The kernel's TCP state, in hex: "0A" listening, "01" established. */
  readonly state: string;
  readonly uid: number;
}

/** 127.0.0.0/8, ::1 and IPv4-mapped loopback (as Node reports socket addresses). */
export function isLoopbackAddress(address: string): boolean {
  const v4 = canonicalAddress(address);
  return v4 === "::1" || /^127\.\d+\.\d+\.\d+$/.test(v4);
}

/** "::ffff:127.0.0.1" → "127.0.0.1"; "0:0:0:0:0:0:0:1" → "::1"; others lower-cased. */
export function canonicalAddress(address: string): string {
  const lower = address.toLowerCase().replace(/^\[|\]$/g, "");
  const mapped = /^(?:0*:)*:?ffff:(\d+\.\d+\.\d+\.\d+)$/.exec(lower);
  if (mapped) return mapped[1]!;
  if (/^(0*:){2,7}0*1$/.test(lower) || lower === "::1") return "::1";
  if (/^(0*:){2,7}0*$/.test(lower) || lower === "::") return "::";
  return lower;
}

/** Parse /proc/net/tcp or tcp6 text (header line first). */
export function parseSocketTable(text: string, little = endianness() === "LE"): SocketEntry[] {
  const entries: SocketEntry[] = [];
  for (const line of text.split("\n").slice(1)) {
    const fields = line.trim().split(/\s+/);
    if (fields.length < 8) continue;
    const [local, remote] = [fields[1]!, fields[2]!].map((field) => field.split(":"));
    if (!local || !remote || local.length !== 2 || remote.length !== 2) continue;
    entries.push({
      local: decodeAddress(local[0]!, little),
      localPort: parseInt(local[1]!, 16),
      remote: decodeAddress(remote[0]!, little),
      remotePort: parseInt(remote[1]!, 16),
      state: fields[3]!.toUpperCase(),
      uid: Number(fields[7]),
    });
  }
  return entries;
}

/** The kernel prints each 32-bit word of the address as read in host byte order. */
function decodeAddress(hex: string, little: boolean): string {
  const bytes = Buffer.alloc(hex.length / 2);
  for (let word = 0; word < hex.length / 8; word++) {
    const value = parseInt(hex.slice(word * 8, word * 8 + 8), 16);
    if (little) bytes.writeUInt32LE(value, word * 4);
    else bytes.writeUInt32BE(value, word * 4);
  }
  if (bytes.length === 4) return [...bytes].join(".");
  if (bytes.subarray(0, 10).every((b) => b === 0) && bytes[10] === 0xff && bytes[11] === 0xff) return [...bytes.subarray(12)].join(".");
  const groups = Array.from({ length: 8 }, (_, i) => bytes.readUInt16BE(i * 2).toString(16));
  return canonicalAddress(groups.join(":"));
}

export interface Endpoint {
  readonly address: string;
  readonly port: number;
}

/**
 * The uids that own the server side of the connection from `client` to `server`: every
 * socket listening on the server's port at its address or a wildcard one, and the accepted
 * socket itself when the kernel already lists it.
 */
export function serverOwners(
  entries: readonly SocketEntry[],
  server: Endpoint,
  client: Endpoint,
): { listeners: number[]; accepted: number[] } {
  const address = canonicalAddress(server.address);
  const from = canonicalAddress(client.address);
  const listeners = entries.filter(
    (e) => e.state === "0A" && e.localPort === server.port && (e.local === address || e.local === "0.0.0.0" || e.local === "::"),
  );
  const accepted = entries.filter(
    (e) => e.state !== "0A" && e.local === address && e.localPort === server.port && e.remote === from && e.remotePort === client.port,
  );
  return { listeners: [...new Set(listeners.map((e) => e.uid))], accepted: [...new Set(accepted.map((e) => e.uid))] };
}

/** Read both socket tables (a missing tcp6, as without IPv6, is fine). */
export async function readSocketTables(): Promise<SocketEntry[]> {
  const tables = await Promise.all(
    ["/proc/net/tcp", "/proc/net/tcp6"].map((path) =>
      readFile(path, "utf8").then(
        (text) => parseSocketTable(text),
        (error: NodeJS.ErrnoException) => (error.code === "ENOENT" && path.endsWith("6") ? [] : Promise.reject(error)),
      ),
    ),
  );
  return tables.flat();
}

export interface ListenerPolicy {
  /** uids trusted to run the server: root, this process's own, and the configured account. */
  readonly allowed: ReadonlySet<number>;
  /** For messages: how the allowed accounts are described. */
  readonly describe: string;
}

/**
 * Throw 77 unless every socket serving this loopback connection belongs to an allowed uid.
 * Fails closed: no listener found (the socket tables of another network namespace, a
 * DNAT'ed port) is refused as well.
 */
export async function assertTrustedListener(
  server: Endpoint,
  client: Endpoint,
  policy: ListenerPolicy,
  entries?: readonly SocketEntry[],
): Promise<void> {
  let table: readonly SocketEntry[];
  try {
    table = entries ?? (await readSocketTables());
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code ?? "error";
    // systemd's ProcSubset=pid hides /proc/net: the unit must allow it for a plain-http Connect host.
    const hint = code === "ENOENT" ? "; under systemd, ProcSubset=pid hides it: set ProcSubset=all for this unit, or use https" : "";
    throw permissionError(
      `refusing to send the Connect token to ${show(server)}: cannot read /proc/net/tcp to check who listens there (${code})${hint}`,
    );
  }
  const { listeners, accepted } = serverOwners(table, server, client);
  if (listeners.length === 0) {
    throw permissionError(
      `refusing to send the Connect token to ${show(server)}: no listening socket for it in this host's socket tables, so who answers cannot be checked`,
    );
  }
  const strangers = [...new Set([...listeners, ...accepted])].filter((uid) => !policy.allowed.has(uid));
  if (strangers.length > 0) {
    throw permissionError(
      `refusing to send the Connect token to ${show(server)}: the server there runs as uid ${strangers.join(", ")}, not ${policy.describe}; another local user may have taken Connect's port while it was down (set source.listenerUser if Connect runs as that account)`,
    );
  }
}

const show = (e: Endpoint) => (e.address.includes(":") ? `[${e.address}]:${e.port}` : `${e.address}:${e.port}`);

/**
 * `doctor`'s view of a Connect host (no connection is made): https is fine; plain http
 * elsewhere than loopback sends the token unencrypted; on loopback, whoever listens on the
 * port now must be root, the service account or `listenerUser`.
 */
export function connectHostFinding(
  host: string,
  trusted: { readonly uids: ReadonlySet<number>; readonly describe: string },
): { ok: boolean; detail: string } {
  let url: URL;
  try {
    url = new URL(host);
  } catch {
    return { ok: false, detail: `${host} is not a URL` };
  }
  if (url.protocol === "https:") return { ok: true, detail: `${host}: https` };
  const name = url.hostname.replace(/^\[|\]$/g, "");
  const addresses = name === "localhost" ? ["127.0.0.1", "::1"] : [name];
  if (!addresses.every(isLoopbackAddress)) {
    return {
      ok: false,
      detail: `${host}: plain http to a non-loopback host: the token and every value cross the network unencrypted; use https`,
    };
  }
  const port = Number(url.port || 80);
  let entries: SocketEntry[];
  try {
    entries = ["/proc/net/tcp", "/proc/net/tcp6"].flatMap((path) => (existsSync(path) ? parseSocketTable(readFileSync(path, "utf8")) : []));
  } catch (error) {
    return { ok: false, detail: `${host}: cannot read /proc/net/tcp (${(error as NodeJS.ErrnoException).code ?? "error"})` };
  }
  const owners = [
    ...new Set(addresses.flatMap((address) => serverOwners(entries, { address, port }, { address: "", port: -1 }).listeners)),
  ];
  if (owners.length === 0) {
    return {
      ok: true,
      detail: `${host}: nothing listens there now (Connect down?); fetch sends the token only to a server run by ${trusted.describe}`,
    };
  }
  const strangers = owners.filter((uid) => !trusted.uids.has(uid));
  if (strangers.length > 0) {
    return {
      ok: false,
      detail: `${host}: the server listening there runs as uid ${strangers.join(", ")}, not ${trusted.describe}: another local user may have taken Connect's port (fetch refuses it; set source.listenerUser if Connect runs as that account)`,
    };
  }
  return { ok: true, detail: `${host}: plain http on loopback, server run by uid ${owners.join(", ")}` };
}
