import { chmodSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { randomBytes } from "node:crypto";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { readSealed, seal, sealedPath, unseal, writeSealed, type SealedValue } from "../../helper/src/agent/sealed.js";
import type { SourceConfig } from "../../helper/src/spec.js";

const connect: SourceConfig = { type: "connect", host: "http://127.0.0.1:8080", tokenCredential: "op-token" };
const value = 's3cret value ✓ "quoted"';
const values = new Map<string, SealedValue>([
  ["op://V/a/password", { value, at: 1_700_000_000_000 }],
  ["op://V/b/password", { value: "B", at: 1_700_000_100_000 }],
]);

let dir: string;
let key: Buffer;
beforeEach(() => {
  dir = join(mkdtempSync(join(tmpdir(), "hs-sealed-")), "state");
  key = randomBytes(32);
});
afterEach(() => rmSync(join(dir, ".."), { recursive: true, force: true }));

describe("the agent's sealed file", () => {
  it("round-trips values with their times; no value and no reference in the bytes", () => {
    const sealed = seal({ key, source: connect }, values);
    expect(unseal({ key, source: connect }, sealed)).toEqual(values);
    for (const needle of [value, "op://V/a/password", Buffer.from(value).toString("base64")])
      expect(sealed.includes(Buffer.from(needle)), needle).toBe(false);
    expect(seal({ key, source: connect }, values).equals(sealed), "a fresh IV each time").toBe(false);
  });

  it("refuses another key, another source (the associated data), a flipped byte and a truncated file", () => {
    const sealed = seal({ key, source: connect }, values);
    expect(() => unseal({ key: randomBytes(32), source: connect }, sealed)).toThrow(/does not authenticate/);
    expect(() => unseal({ key, source: { type: "connect", host: "http://10.0.0.1:8080" } }, sealed)).toThrow(/does not authenticate/);
    expect(() => unseal({ key, source: { type: "onepassword" } }, sealed)).toThrow(/does not authenticate/);
    // the token's location is not part of where values come from
    expect(unseal({ key, source: { type: "connect", host: "http://127.0.0.1:8080", tokenFile: "/x" } }, sealed)).toEqual(values);
    for (const at of [20, 30, sealed.length - 1]) {
      const bad = Buffer.from(sealed);
      bad[at] = bad[at]! ^ 1;
      expect(() => unseal({ key, source: connect }, bad), `byte ${at}`).toThrow(/does not authenticate/);
    }
    expect(() => unseal({ key, source: connect }, sealed.subarray(0, 30))).toThrow(/bad header/);
    expect(() => unseal({ key: randomBytes(16), source: connect }, sealed)).toThrow(/16 bytes, not 32/);
  });

  it("is written atomically, 0600 in a 0700 directory, no temp file left; read back; tampered → unusable, never a throw", async () => {
    expect(await readSealed({ dir, key, source: connect })).toEqual({ kind: "absent" });
    const path = await writeSealed({ dir, key, source: connect }, values);
    expect(path).toBe(sealedPath(dir));
    expect(statSync(dir).mode & 0o777).toBe(0o700);
    expect(statSync(path).mode & 0o777).toBe(0o600);
    expect(readdirSync(dir)).toEqual(["values.sealed"]);
    expect(await readSealed({ dir, key, source: connect })).toEqual({ kind: "ok", values });

    const bytes = readFileSync(path);
    bytes[bytes.length - 3] = bytes[bytes.length - 3]! ^ 0x40;
    writeFileSync(path, bytes);
    const tampered = await readSealed({ dir, key, source: connect });
    expect(tampered.kind).toBe("unusable");
    expect(tampered.kind === "unusable" && tampered.why).toMatch(/values\.sealed does not authenticate/);
    writeFileSync(path, "garbage");
    expect((await readSealed({ dir, key, source: connect })).kind).toBe("unusable");

    chmodSync(dir, 0o755);
    const open = await readSealed({ dir, key, source: connect });
    expect(open.kind === "unusable" && open.why).toMatch(/accessible to group or others/);
    await expect(writeSealed({ dir, key, source: connect }, values)).rejects.toThrow(/accessible to group or others/);
  });
});
