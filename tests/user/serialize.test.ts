/**
 * --serialize through the wrapper: a host-wide flock on the mapfile, held by the fetcher
 * while it resolves. Concurrent runs never overlap their fetch; a waiting run says so,
 * gives up after the timeout, and stops cleanly on SIGTERM.
 */
import { existsSync } from "node:fs";
import { join } from "node:path";
import { execa } from "execa";
import { afterAll, beforeAll, expect, it } from "vitest";
import { startFakeConnect } from "../connect/fake-connect.mjs";
import { createHost, describeAsRoot, listTree, processesOf, type Account, type Host } from "./harness.js";

const vault = { vaults: { V: { items: { A: { fields: { one: "alpha-1" } } } } } };

interface RequestRecord {
  start: number;
  end: number | undefined;
}

/** The most requests the server had in flight at once. */
function maxInFlight(requests: RequestRecord[]): number {
  const events = requests.flatMap((r): [number, number][] => [
    [r.start, 1],
    [r.end ?? Infinity, -1],
  ]);
  events.sort((a, b) => a[0] - b[0] || a[1] - b[1]);
  let now = 0;
  let max = 0;
  for (const [, delta] of events) max = Math.max(max, (now += delta));
  return max;
}

/** [start, end] of each fetcher's resolve, from its --verbose log. */
function resolveIntervals(stderr: string): [number, number] {
  const start = /started resolving at (\d+)/.exec(stderr);
  const end = /finished resolving at (\d+)/.exec(stderr);
  if (!start || !end) throw new Error(`no resolve timestamps in:\n${stderr}`);
  return [Number(start[1]), Number(end[1])];
}

/** Hold the same flock as a --serialize run, in one process we can stop by its pid. */
function holdLock(path: string) {
  return execa("sh", ["-c", 'exec 9<"$1" && flock 9 && exec sleep 60', "sh", path], { reject: false });
}

describeAsRoot("--serialize through the wrapper", () => {
  let host: Host;
  let users: Account[];
  let fake: { url: string; requests: RequestRecord[]; clearRequests(): void; close(): Promise<void> };

  beforeAll(async () => {
    host = await createHost({ users: 3, lockTimeoutSeconds: 12 });
    users = host.users;
    fake = await startFakeConnect({ vault, token: host.token, latencyMs: 150 });
    host.writeConfig({ source: { type: "connect", host: fake.url } });
    host.writeMapfile(users.map((u) => `${u.name} op://V/A/one one.txt`).join("\n"));
  });
  afterAll(async () => {
    await fake?.close();
    await host?.destroy();
  });

  it("concurrent runs never overlap their fetch (and do without --serialize: the control)", async () => {
    fake.clearRequests();
    const started = performance.now();
    const serialized = await Promise.all(users.map((u) => host.run(u, ["--serialize", "-v"])));
    const serializedMs = performance.now() - started;
    for (const r of serialized) expect(r.exitCode, r.stderr).toBe(0);
    expect(maxInFlight(fake.requests)).toBe(1);
    const intervals = serialized.map((r) => resolveIntervals(r.stderr)).sort((a, b) => a[0] - b[0]);
    for (let i = 1; i < intervals.length; i++) expect(intervals[i]![0]).toBeGreaterThanOrEqual(intervals[i - 1]![1]);
    expect(serialized.some((r) => r.stderr.includes("waiting for another run to finish (--serialize)"))).toBe(true);
    for (const u of users) expect(listTree(host.secretsDir(u))).toEqual(["one.txt"]);

    fake.clearRequests();
    const startedFree = performance.now();
    const free = await Promise.all(users.map((u) => host.run(u, ["-v"])));
    const freeMs = performance.now() - startedFree;
    for (const r of free) expect(r.exitCode, r.stderr).toBe(0);
    expect(maxInFlight(fake.requests)).toBeGreaterThan(1);
    console.info(`3 runs against a 150 ms Connect: ${Math.round(serializedMs)} ms with --serialize, ${Math.round(freeMs)} ms without`);
  });

  it("a waiting run logs, and stops cleanly on SIGTERM without writing", async () => {
    const [u0] = users as [Account];
    const holder = holdLock(join(host.configDir, "mapfile"));
    try {
      await new Promise((r) => setTimeout(r, 200));
      const run = host.run(u0, ["--serialize"]);
      const waiting = await new Promise<boolean>((resolve) => {
        const timer = setTimeout(() => resolve(false), 10_000);
        run.stderr?.on("data", (chunk: Buffer) => {
          if (chunk.toString().includes("waiting for another run")) {
            clearTimeout(timer);
            resolve(true);
          }
        });
      });
      expect(waiting).toBe(true);
      // The waiting fetcher is the service account (the caller cannot signal it): stopping
      // the writer (the caller's own process) cancels the wait.
      const waiter = processesOf(new Set([host.svc.uid]));
      expect(waiter.length).toBeGreaterThan(0);
      const stopped = performance.now();
      process.kill(run.pid!, "SIGTERM");
      const r = await run;
      expect(r.exitCode).toBe(75);
      expect(r.stderr).toMatch(/stopped by SIGTERM; nothing written/);
      expect(performance.now() - stopped).toBeLessThan(3000);
      const until = Date.now() + 3000;
      while (processesOf(new Set([host.svc.uid])).length > 0 && Date.now() < until) await new Promise((r) => setTimeout(r, 100));
      expect(processesOf(new Set([host.svc.uid]))).toEqual([]);
    } finally {
      holder.kill("SIGTERM");
      await holder;
    }
  });

  it("a waiting run gives up after the timeout (built with 12 s here; 300 s by default)", async () => {
    const [u0] = users as [Account];
    const before = listTree(host.secretsDir(u0));
    const holder = holdLock(join(host.configDir, "mapfile"));
    try {
      await new Promise((r) => setTimeout(r, 200));
      const r = await host.run(u0, ["--serialize"]);
      expect(r.exitCode).toBe(75);
      expect(r.stderr).toMatch(/gave up after 12 s waiting for another run to finish; nothing written/);
      expect(listTree(host.secretsDir(u0))).toEqual(before);
      // Without --serialize the lock is not consulted.
      const free = await host.run(u0, []);
      expect(free.exitCode, free.stderr).toBe(0);
    } finally {
      holder.kill("SIGTERM");
      await holder;
    }
    expect(existsSync(host.wrapper)).toBe(true);
  });
});
