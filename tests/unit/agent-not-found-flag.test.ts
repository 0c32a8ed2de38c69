// `agent --not-found-ttl`: the real CLI agent on a socketpair (fd 3, as the front end gives it),
// asked twice for a credential whose reference the backend does not have. Each backend batch
// is one log line, so the log says whether the second request asked again.
import { spawn } from "node:child_process";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import type { Duplex } from "node:stream";
import { afterAll, describe, expect, it } from "vitest";
import { encodeRequest } from "../../helper/src/agent/frames.js";
import { cliPath, makeTempDir, removeTempDirs, runCli } from "../helpers.js";

afterAll(removeTempDirs);

const unit = "web.service";
const ask = (id: number) =>
  encodeRequest({
    id,
    uid: 0,
    pid: 99,
    address: Buffer.concat([Buffer.from([0]), Buffer.from(`00ff/unit/${unit}/db`)]),
    cgroup: `0::/system.slice/${unit}\n`,
  });

/** Run the agent, ask twice; the number of backend batches after each answer. */
async function batchesAfterEach(flags: string[]): Promise<number[]> {
  const dir = await makeTempDir("hs-agent-nf-");
  const vault = join(dir, "vault.json");
  writeFileSync(vault, JSON.stringify({ vaults: { V: { items: { db: { fields: { password: "x" } } } } } }), { mode: 0o600 });
  const policy = join(dir, "policy.json");
  writeFileSync(policy, JSON.stringify({ version: 1, units: { [unit]: { files: { db: { ref: "op://V/gone/password" } } } } }));
  const child = spawn(process.execPath, [cliPath, "agent", "--policy", policy, "--source", `file:${vault}`, "--ttl", "300", ...flags], {
    stdio: ["ignore", "ignore", "pipe", "pipe"],
  });
  let log = "";
  child.stderr!.on("data", (b: Buffer) => (log += b.toString()));
  const channel = child.stdio[3] as Duplex;
  channel.on("error", () => {}); // an agent that exits early: its log says why
  let replies = Buffer.alloc(0);
  channel.on("data", (b: Buffer) => (replies = Buffer.concat([replies, b])));
  const reply = async (n: number) => {
    for (let i = 0; i < 200 && replies.length < n * 9; i++) await new Promise((r) => setTimeout(r, 25));
    expect(replies.length, log).toBeGreaterThanOrEqual(n * 9);
  };
  const batches = () => (log.match(/backend batch \d+/g) ?? []).length;
  try {
    const counts: number[] = [];
    for (const id of [1, 2]) {
      channel.write(ask(id));
      await reply(id);
      counts.push(batches());
    }
    expect(log).toMatch(/web\.service: credential db: not served \(69\)/);
    return counts;
  } finally {
    channel.end();
    child.kill();
  }
}

describe("agent --not-found-ttl", () => {
  it("default (the smaller of --ttl and 30 s): the second request for a missing reference does not ask the backend again", async () => {
    const [first, second] = await batchesAfterEach([]);
    expect(first).toBeGreaterThan(0);
    expect(second).toBe(first);
  });

  it("--not-found-ttl 0: every request for a missing reference asks the backend", async () => {
    const [first, second] = await batchesAfterEach(["--not-found-ttl", "0"]);
    expect(first).toBeGreaterThan(0);
    expect(second).toBe(first! + 1);
  });

  it("a negative or huge value is a usage error (64) naming the flag", async () => {
    for (const bad of ["-1", "86401", "soon"]) {
      const r = await runCli(["agent", "--policy", "p.json", "--not-found-ttl", bad]);
      expect(r.exitCode, bad).toBe(64);
      expect(r.stderr).toMatch(/--not-found-ttl must be a number of seconds from 0 to 86400/);
    }
  });
});
