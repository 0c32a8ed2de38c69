// The wrapper protocol's frames: encoding, decoding, and refusals.
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { descriptors, encodeFrame, env, FrameDecoder, protocolVersion, type Frame } from "../../helper/src/user/protocol.js";

const wrapperSource = readFileSync(join(import.meta.dirname, "../../helper/wrapper/homelab-secrets-user.c"), "utf8");

describe("the C wrapper and protocol.ts agree", () => {
  it("descriptor numbers: the wrapper's FD_* constants and the HS_*_FD values it exports", () => {
    const defines = Object.fromEntries([...wrapperSource.matchAll(/^#define (FD_[A-Z]+) (\d+)$/gm)].map((m) => [m[1]!, Number(m[2])]));
    expect(defines).toEqual({
      FD_MAPFILE: descriptors.fetcher.mapfile,
      FD_TOKEN: descriptors.fetcher.token,
      FD_CONFIG: descriptors.fetcher.config,
      FD_OUT: descriptors.fetcher.out,
      FD_IN: descriptors.writer.in,
      FD_LOG: descriptors.writer.log,
    });
    const exported = Object.fromEntries([...wrapperSource.matchAll(/"(HS_[A-Z]+_FD)=(\d+)"/g)].map((m) => [m[1]!, Number(m[2])]));
    expect(exported).toEqual({
      [env.mapfileFd]: descriptors.fetcher.mapfile,
      [env.tokenFd]: descriptors.fetcher.token,
      [env.configFd]: descriptors.fetcher.config,
      [env.outFd]: descriptors.fetcher.out,
      [env.inFd]: descriptors.writer.in,
      [env.logFd]: descriptors.writer.log,
    });
    // The fetcher's stderr is the log pipe.
    expect(wrapperSource).toMatch(new RegExp(`dup2\\(lp\\[1\\], ${descriptors.fetcher.log}\\)`));
  });

  it("every environment name of the protocol is set by the wrapper, and HS_WRAPPER is the version", () => {
    for (const name of Object.values(env)) expect(wrapperSource, name).toContain(`"${name}`);
    expect(wrapperSource).toContain(`"${env.wrapper}=${protocolVersion}"`);
  });
});

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
