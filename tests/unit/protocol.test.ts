// The wrapper protocol's frames: encoding, decoding, and refusals.
import { describe, expect, it } from "vitest";
import { encodeFrame, FrameDecoder, type Frame } from "../../helper/src/user/protocol.js";

describe("wrapper protocol frames", () => {
  const frames: Frame[] = [
    { type: "put", path: "/run/user/1/secrets/a", value: new Uint8Array([0, 1, 2, 255]) },
    { type: "put", path: "/ü/ñ", value: new TextEncoder().encode("value with\nnewline") },
    { type: "cleanup", path: "/run/user/1/secrets/b" },
    { type: "error", exitCode: 69, message: "not found: op://V/I/f" },
    { type: "done" },
  ];
  it("round-trips, whole or fed one byte at a time", () => {
    const bytes = Buffer.concat(frames.map(encodeFrame));
    expect(new FrameDecoder().push(bytes)).toEqual(frames);
    const decoder = new FrameDecoder();
    const out: Frame[] = [];
    for (const byte of bytes) out.push(...decoder.push(Uint8Array.of(byte)));
    expect(out).toEqual(frames);
    expect(decoder.pending).toBe(0);
  });
  it("refuses malformed input", () => {
    expect(() => new FrameDecoder().push(Buffer.from([0x58, 0, 0, 0, 0]))).toThrow(/unknown frame type/);
    expect(() => new FrameDecoder().push(Buffer.from([0x50, 0xff, 0xff, 0xff, 0xff]))).toThrow(/too large/);
    expect(() => new FrameDecoder().push(Buffer.from([0x50, 0, 0, 0, 4, 0, 0, 0, 9]))).toThrow(/bad path length/);
    expect(() => new FrameDecoder().push(Buffer.from([0x43, 0, 0, 0, 1, 0xff]))).toThrow(/UTF-8/);
    expect(() => new FrameDecoder().push(Buffer.from([0x44, 0, 0, 0, 1, 0]))).toThrow(/done frame/);
  });
});
