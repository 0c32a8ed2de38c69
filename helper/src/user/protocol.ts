/**
 * The wrapper <-> node protocol, version 1: environment names, descriptor numbers and the
 * frames on the value pipe. docs/ARCHITECTURE.md ("Wrapper protocol") describes it; the C
 * wrapper (helper/wrapper/homelab-secrets-user.c) must agree, which
 * tests/unit/protocol.test.ts checks.
 */
import { dataError, usageError } from "../errors.js";

export const protocolVersion = 1;

/** The descriptors the wrapper sets up for each half (also named in the environment). */
export const descriptors = {
  fetcher: { log: 2, mapfile: 3, token: 4, config: 5, out: 6 },
  writer: { in: 3, log: 4 },
} as const;

/** The environment variables of the protocol. */
export const env = {
  wrapper: "HS_WRAPPER",
  role: "HS_ROLE",
  callerUid: "HS_CALLER_UID",
  callerGid: "HS_CALLER_GID",
  callerUser: "HS_CALLER_USER",
  mapfilePath: "HS_MAPFILE_PATH",
  mapfileFd: "HS_MAPFILE_FD",
  tokenFd: "HS_TOKEN_FD",
  configFd: "HS_CONFIG_FD",
  outFd: "HS_OUT_FD",
  writerPid: "HS_WRITER_PID",
  fetcherLimit: "HS_FETCHER_LIMIT_S",
  stateDir: "HS_STATE_DIR",
  inFd: "HS_IN_FD",
  logFd: "HS_LOG_FD",
} as const;

export type Frame =
  | { readonly type: "put"; readonly path: string; readonly value: Uint8Array }
  | { readonly type: "cleanup"; readonly path: string }
  | { readonly type: "error"; readonly exitCode: number; readonly message: string }
  | { readonly type: "done" };

/** Largest payload accepted: a value of up to 16 MiB plus its path. */
export const maxPayload = 16 * 1024 * 1024 + 4096 + 4;
const maxPath = 4096;

const typeByte = { put: 0x50, cleanup: 0x43, error: 0x45, done: 0x44 } as const; // P C E D

export function encodeFrame(frame: Frame): Buffer {
  let payload: Buffer;
  switch (frame.type) {
    case "put": {
      const path = Buffer.from(frame.path, "utf8");
      if (path.length > maxPath) throw dataError(`path too long: ${frame.path.slice(0, 80)}…`);
      const head = Buffer.alloc(4);
      head.writeUInt32BE(path.length);
      payload = Buffer.concat([head, path, frame.value]);
      break;
    }
    case "cleanup":
      payload = Buffer.from(frame.path, "utf8");
      break;
    case "error":
      payload = Buffer.concat([Buffer.from([frame.exitCode & 0xff]), Buffer.from(frame.message, "utf8")]);
      break;
    case "done":
      payload = Buffer.alloc(0);
      break;
  }
  if (payload.length > maxPayload) throw dataError("a value is too large to hand to the writer (16 MiB at most)");
  const header = Buffer.alloc(5);
  header[0] = typeByte[frame.type];
  header.writeUInt32BE(payload.length, 1);
  return Buffer.concat([header, payload]);
}

/**
 * Incremental decoder: feed chunks, take complete frames. Throws on anything malformed —
 * the writer then writes nothing.
 */
export class FrameDecoder {
  private buffer = Buffer.alloc(0);

  push(chunk: Uint8Array): Frame[] {
    this.buffer = this.buffer.length === 0 ? Buffer.from(chunk) : Buffer.concat([this.buffer, chunk]);
    const frames: Frame[] = [];
    for (;;) {
      if (this.buffer.length < 5) break;
      const length = this.buffer.readUInt32BE(1);
      if (length > maxPayload) throw protocolError(`frame of ${length} bytes is too large`);
      if (this.buffer.length < 5 + length) break;
      const type = this.buffer[0];
      const payload = this.buffer.subarray(5, 5 + length);
      this.buffer = this.buffer.subarray(5 + length);
      frames.push(decodePayload(type, payload));
    }
    return frames;
  }

  /** Bytes of an incomplete frame still buffered. */
  get pending(): number {
    return this.buffer.length;
  }
}

function decodePayload(type: number | undefined, payload: Buffer): Frame {
  switch (type) {
    case typeByte.put: {
      if (payload.length < 4) throw protocolError("short put frame");
      const pathLength = payload.readUInt32BE(0);
      if (pathLength === 0 || pathLength > maxPath || 4 + pathLength > payload.length) throw protocolError("bad path length in put frame");
      const path = decodeUtf8(payload.subarray(4, 4 + pathLength));
      // Copy: the value must not keep the whole receive buffer alive.
      return { type: "put", path, value: new Uint8Array(payload.subarray(4 + pathLength)) };
    }
    case typeByte.cleanup:
      if (payload.length === 0 || payload.length > maxPath) throw protocolError("bad cleanup frame");
      return { type: "cleanup", path: decodeUtf8(payload) };
    case typeByte.error:
      if (payload.length < 1) throw protocolError("short error frame");
      return { type: "error", exitCode: payload[0]!, message: decodeUtf8(payload.subarray(1)) };
    case typeByte.done:
      if (payload.length !== 0) throw protocolError("done frame with a payload");
      return { type: "done" };
    default:
      throw protocolError(`unknown frame type ${type}`);
  }
}

function decodeUtf8(bytes: Uint8Array): string {
  try {
    return new TextDecoder("utf-8", { fatal: true }).decode(bytes);
  } catch {
    throw protocolError("a path or message is not valid UTF-8");
  }
}

function protocolError(message: string): Error {
  return dataError(`wrapper protocol: ${message}`);
}

/** Which half of the wrapper this process is, and for whom. */
export interface WrapperContext {
  readonly role: "fetcher" | "writer";
  readonly caller: { readonly user: string; readonly uid: number; readonly gid: number };
  readonly mapfilePath: string;
}

/** The wrapper's environment, checked; undefined when not run by the wrapper. */
export function wrapperContext(environment: NodeJS.ProcessEnv = process.env): WrapperContext | undefined {
  if (environment[env.wrapper] === undefined) return undefined;
  if (environment[env.wrapper] !== "1") throw usageError(`unsupported wrapper protocol ${environment[env.wrapper]}`);
  const role = environment[env.role];
  if (role !== "fetcher" && role !== "writer") throw usageError(`bad ${env.role}`);
  const uid = Number(environment[env.callerUid]);
  const gid = Number(environment[env.callerGid]);
  const user = environment[env.callerUser] ?? "";
  if (!Number.isInteger(uid) || uid < 0 || !Number.isInteger(gid) || gid < 0 || user === "")
    throw usageError("bad caller in the wrapper environment");
  return { role, caller: { user, uid, gid }, mapfilePath: environment[env.mapfilePath] ?? "mapfile" };
}

/** A descriptor number the wrapper passed in `name` (3 or above), or undefined. */
export function fdFromEnv(name: string): number | undefined {
  const text = process.env[name];
  if (text === undefined) return undefined;
  const fd = Number(text);
  if (!Number.isInteger(fd) || fd < 3) throw usageError(`bad ${name}`);
  return fd;
}
