/**
 * The framed protocol between the C front end (helper/agent/homelab-secrets-agent.c) and
 * the Node agent, over a socketpair. Big-endian; every frame starts with a u32 length.
 *   request: u32 id, u32 uid, u32 pid, u16 n, n bytes peer address, u16 m, m bytes cgroup file
 *   reply:   u32 id, u8 status (0 = serve the data, else refuse), data
 */
import type { PeerFacts } from "./peer.js";

export interface Request extends PeerFacts {
  readonly id: number;
}

/** The front end accepts replies up to this size (header included). */
export const maxReplyPayload = (1 << 20) + 64;

/** Splits a byte stream into request frames; throws on a malformed one. */
export class RequestReader {
  private buffer: Buffer = Buffer.alloc(0);

  /** Add bytes; returns the requests now complete. */
  push(chunk: Buffer): Request[] {
    this.buffer = this.buffer.length === 0 ? chunk : Buffer.concat([this.buffer, chunk]);
    const out: Request[] = [];
    while (this.buffer.length >= 4) {
      const length = this.buffer.readUInt32BE(0);
      if (length < 16 || length > 65536) throw new Error(`request frame of ${length} bytes`);
      if (this.buffer.length < 4 + length) break;
      out.push(decodeRequest(this.buffer.subarray(4, 4 + length)));
      this.buffer = this.buffer.subarray(4 + length);
    }
    return out;
  }
}

export function decodeRequest(payload: Buffer): Request {
  const id = payload.readUInt32BE(0);
  const uid = payload.readUInt32BE(4);
  const pid = payload.readUInt32BE(8);
  const n = payload.readUInt16BE(12);
  if (14 + n + 2 > payload.length) throw new Error("request frame: address runs past the frame");
  const address = Buffer.from(payload.subarray(14, 14 + n));
  const m = payload.readUInt16BE(14 + n);
  if (16 + n + m !== payload.length) throw new Error("request frame: cgroup length does not match the frame");
  const cgroup = payload.subarray(16 + n, 16 + n + m).toString("utf8");
  return { id, uid, pid, address, cgroup };
}

/** Build a request frame (tests and benchmarks stand in for the front end with it). */
export function encodeRequest(request: Request): Buffer {
  const cgroup = Buffer.from(request.cgroup, "utf8");
  const head = Buffer.alloc(4 + 14);
  head.writeUInt32BE(14 + request.address.length + 2 + cgroup.length, 0);
  head.writeUInt32BE(request.id, 4);
  head.writeUInt32BE(request.uid, 8);
  head.writeUInt32BE(request.pid, 12);
  head.writeUInt16BE(request.address.length, 16);
  const m = Buffer.alloc(2);
  m.writeUInt16BE(cgroup.length, 0);
  return Buffer.concat([head, request.address, m, cgroup]);
}

export function encodeReply(id: number, data: Buffer | undefined): Buffer {
  const head = Buffer.alloc(9);
  head.writeUInt32BE(5 + (data?.length ?? 0), 0);
  head.writeUInt32BE(id, 4);
  head.writeUInt8(data ? 0 : 1, 8);
  return data ? Buffer.concat([head, data]) : head;
}
