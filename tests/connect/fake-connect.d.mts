// Type declarations for fake-connect.mjs (plain ESM JavaScript so it runs with bare `node`).
// Mirrors the JSDoc typedefs there; keep the two in step when the server changes.

/** The project's file-vault JSON: {"vaults":{"V":{"items":{"I":{"fields":{"f":"v"},"sections":{"S":{"f":"v"}}}}}}} */
export interface FileVault {
  vaults: Record<string, { items?: Record<string, FileItem> }>;
}

/** Field values are stringified with String(). */
export interface FileItem {
  fields?: Record<string, unknown>;
  sections?: Record<string, Record<string, unknown>>;
}

export interface ConnectField {
  id: string;
  /** STRING | CONCEALED | OTP | SSHKEY | … */
  type: string;
  /** USERNAME | PASSWORD | NOTES */
  purpose?: string;
  label: string;
  value?: string;
  section?: { id: string };
  /** The current code, OTP fields only. */
  totp?: string;
}

export interface ConnectItem {
  id: string;
  title: string;
  version: number;
  vault: { id: string };
  category: string;
  lastEditedBy: string;
  createdAt: string;
  updatedAt: string;
  sections: { id: string; label: string }[];
  fields: ConnectField[];
}

export interface FaultBase {
  /** string: the request path starts with it; RegExp: tested against the decoded path + query. Absent: every request. */
  match?: string | RegExp;
  /** Only this method (default: any). */
  method?: string;
  /** How many matching requests it applies to (default: unlimited). */
  times?: number;
  /** In a --faults JSON file: treat `match` as a regular expression. */
  regex?: boolean;
}

export type StatusFault = FaultBase & { type: "status"; status: number; retryAfter?: string | number; body?: unknown };
/** Destroy the socket, no response. */
export type ResetFault = FaultBase & { type: "reset" };
/** Never answer (until close()). */
export type HangFault = FaultBase & { type: "hang" };
/** Delay, then answer normally. */
export type LatencyFault = FaultBase & { type: "latency"; ms: number };
export type Fault = StatusFault | ResetFault | HangFault | LatencyFault;

export interface RequestRecord {
  seq: number;
  method: string;
  /** Decoded pathname. */
  path: string;
  /** Decoded query string ("" or "?…"). */
  search: string;
  query: Record<string, string>;
  authorized: boolean;
  /** ms (performance.now) when the request arrived. */
  start: number;
  /** ms when the response finished or the socket closed. */
  end: number | undefined;
  status: number | undefined;
  /** The fault applied, if any ("status 503", "reset", "hang", "latency"). */
  fault: string | undefined;
}

export interface FakeConnectOptions {
  /** The vault data (or vaultFile). */
  vault?: FileVault;
  vaultFile?: string;
  /** The bearer token to accept. */
  token: string;
  /** Default 0 (random). */
  port?: number;
  /** Default 127.0.0.1. */
  host?: string;
  /** Added to every request. */
  latencyMs?: number;
  faults?: Fault[];
  /** Edit full items (tests: odd shapes); returning nothing keeps the (edited) item. */
  mutateItem?: (item: ConnectItem) => ConnectItem | void;
  /** Clock for TOTP codes (ms since epoch). */
  now?: () => number;
  /** Told of every request as it arrives (whether it carried an Authorization header, not its value). */
  onRequest?: (seen: { method: string; path: string; authorization: boolean }) => void;
}

export interface FakeConnectIds {
  /** vault name → id */
  vaults: Record<string, string>;
  /** vault name → item title → id */
  items: Record<string, Record<string, string>>;
  /** vault name → item title → section label → id */
  sections: Record<string, Record<string, Record<string, string>>>;
}

export interface FakeConnect {
  /** Base URL, no trailing slash. */
  url: string;
  port: number;
  requests: RequestRecord[];
  ids: FakeConnectIds;
  /** Replace the fault script. */
  setFaults(faults: Fault[]): void;
  setLatency(ms: number): void;
  clearRequests(): void;
  requestsTo(path: string | RegExp): RequestRecord[];
  close(): Promise<void>;
}

/** A stable 26-character lowercase id (like 1Password's) derived from `parts` (joined with NUL). */
export function stableId(...parts: string[]): string;

/** RFC 6238 TOTP for an otpauth:// URI or a bare base32 secret; throws on bad base32. */
export function totp(uriOrSecret: string, nowMs?: number): string;

/**
 * Turn the file-vault JSON into Connect's model. Built-in names get Connect's built-in ids
 * (username, password, notesPlain); other fields get stable 26-char ids. Throws on a malformed vault.
 */
export function buildModel(data: FileVault): {
  vaults: Map<string, { id: string; name: string; items: Map<string, ConnectItem> }>;
  ids: FakeConnectIds;
};

/** Start the server. Resolves once it is listening. */
export function startFakeConnect(options: FakeConnectOptions): Promise<FakeConnect>;
