import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { Batcher } from "../../helper/src/agent/batcher.js";
import { decodeRequest, encodeReply, encodeRequest, RequestReader } from "../../helper/src/agent/frames.js";
import { parsePolicy, policyReferences } from "../../helper/src/agent/policy.js";
import { answer } from "../../helper/src/agent/server.js";
import { createLogger } from "../../helper/src/log.js";
import { createFileSource } from "../../helper/src/sources/file.js";

const addr = (text: string) => Buffer.concat([Buffer.from([0]), Buffer.from(text)]);

describe("agent frames", () => {
  it("round-trips requests split at any byte, and encodes serve and refuse replies", () => {
    const requests = [
      {
        id: 1,
        uid: 0,
        pid: 4242,
        address: addr("ab12/unit/foo@bar.service/db"),
        cgroup: "0::/system.slice/system-foo.slice/foo@bar.service\n",
      },
      { id: 2, uid: 1000, pid: 7, address: Buffer.from("/not/abstract"), cgroup: "" },
    ];
    const stream = Buffer.concat(requests.map(encodeRequest));
    for (const step of [1, 3, 7, stream.length]) {
      const reader = new RequestReader();
      const got = [];
      for (let i = 0; i < stream.length; i += step) got.push(...reader.push(stream.subarray(i, i + step)));
      expect(got).toEqual(requests);
    }
    expect([...encodeReply(9, Buffer.from("xy"))]).toEqual([0, 0, 0, 7, 0, 0, 0, 9, 0, 0x78, 0x79]);
    expect([...encodeReply(9, undefined)]).toEqual([0, 0, 0, 5, 0, 0, 0, 9, 1]);
    expect(decodeRequest(Buffer.alloc(16))).toMatchObject({ id: 0, address: Buffer.alloc(0), cgroup: "" });
    expect(() => decodeRequest(Buffer.alloc(17))).toThrow(/cgroup length/);
    expect(() => new RequestReader().push(Buffer.from([0, 0, 0, 3, 1, 2, 3]))).toThrow(/request frame of 3 bytes/);
  });
});

describe("agent answer", () => {
  let dir: string;
  const lines: string[] = [];
  const log = createLogger({ journal: false, write: (l) => void lines.push(l) });
  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), "hs-agent-"));
    writeFileSync(
      join(dir, "vault.json"),
      JSON.stringify({ vaults: { V: { items: { db: { fields: { password: "s3cret-value", empty: "" } } } } } }),
      { mode: 0o600 },
    );
    lines.length = 0;
  });
  afterEach(() => rmSync(dir, { recursive: true, force: true }));

  const setup = () => {
    const policy = parsePolicy(
      JSON.stringify({
        version: 1,
        units: { "web.service": { files: { db: { ref: "op://V/db/password" }, blank: { ref: "op://V/db/empty" } } } },
      }),
      "policy.json",
    );
    const batcher = new Batcher({
      createSource: () => Promise.resolve(createFileSource(join(dir, "vault.json"))),
      prefetch: policyReferences(policy),
      ttlSeconds: 60,
      deadlineSeconds: 5,
      log,
    });
    return { policy, batcher };
  };
  const ask = (unit: string, id: string, over: { uid?: number; cgroup?: string } = {}) => ({
    id: 5,
    uid: over.uid ?? 0,
    pid: 99,
    address: addr(`00ff/unit/${unit}/${id}`),
    cgroup: over.cgroup ?? `0::/system.slice/${unit}\n`,
  });

  it("serves the rendered bytes to root in the unit's cgroup, logging names, never the value", async () => {
    const { policy, batcher } = setup();
    const a = await answer(ask("web.service", "db"), policy, batcher, log);
    expect(a).toEqual({ id: 5, data: Buffer.from("s3cret-value") });
    expect(lines).toEqual([
      "homelab-secrets: backend batch 1: 2 reference(s) for 1 request(s)\n",
      "homelab-secrets: web.service: credential db: served 12 bytes\n",
    ]);
  });

  it("refuses: not root, another cgroup, an unknown unit or ID, an empty value — each with a line naming unit and credential", async () => {
    const { policy, batcher } = setup();
    const refused = [
      await answer(ask("web.service", "db", { uid: 1000 }), policy, batcher, log),
      await answer(ask("web.service", "db", { cgroup: "0::/system.slice/other.service\n" }), policy, batcher, log),
      await answer(ask("other.service", "db"), policy, batcher, log),
      await answer(ask("web.service", "nope"), policy, batcher, log),
      await answer(ask("web.service", "blank"), policy, batcher, log),
    ];
    expect(refused.map((a) => a.data)).toEqual([undefined, undefined, undefined, undefined, undefined]);
    const text = lines.join("");
    expect(text).toContain("web.service: credential db: refused: the peer (pid 99) is uid 1000, not root");
    expect(text).toContain("web.service: credential db: refused: the peer (pid 99) is in unit other.service, not web.service");
    expect(text).toContain("other.service: credential db: refused: the agent policy has no entry for other.service");
    expect(text).toContain("web.service: credential nope: refused: the agent policy gives web.service no credential of that name");
    expect(text).toContain(
      "web.service: credential blank: not served (65), the unit will not start: web.service: credential blank renders to 0 bytes",
    );
    expect(text).not.toContain("s3cret-value");
  });
  it("a refresh unit's loads: fresh from the backend once per load (pid), within the TTL, and the service's next load gets the new value from memory", async () => {
    const policy = parsePolicy(
      JSON.stringify({
        version: 1,
        units: {
          "web.service": { files: { db: { ref: "op://V/db/password" } } },
          "web-secrets-refresh.service": { refreshes: "web.service" },
        },
      }),
      "policy.json",
    );
    const batcher = new Batcher({
      createSource: () => Promise.resolve(createFileSource(join(dir, "vault.json"))),
      prefetch: policyReferences(policy),
      ttlSeconds: 300,
      deadlineSeconds: 5,
      log,
    });
    const load = async (unit: string, pid = 99) => (await answer({ ...ask(unit, "db"), pid }, policy, batcher, log)).data?.toString();
    expect(await load("web.service")).toBe("s3cret-value");
    writeFileSync(join(dir, "vault.json"), JSON.stringify({ vaults: { V: { items: { db: { fields: { password: "rotated" } } } } } }));
    expect(await load("web.service"), "within the TTL: memory").toBe("s3cret-value");
    expect(batcher.batches).toBe(1);
    expect(await load("web-secrets-refresh.service", 41)).toBe("rotated");
    expect(await load("web-secrets-refresh.service", 41)).toBe("rotated");
    expect(batcher.batches, "one batch for the load").toBe(2);
    expect(await load("web.service"), "the restart: the new value, from memory").toBe("rotated");
    expect(batcher.batches).toBe(2);
    expect(await load("web-secrets-refresh.service", 42)).toBe("rotated");
    expect(batcher.batches, "the next refresh run asks again").toBe(3);
    expect(lines.join("")).toContain("web-secrets-refresh.service: credential db: a refresh: 1 reference(s) fresh from the backend");
    expect(lines.join("")).not.toMatch(/rotated|s3cret-value/);
  });
});
