// Security issue 13, item 4 (user mode): the wrapper's fetcher sends the Connect token over
// plain http to loopback only to a server run by root, the service account or the
// configured source.listenerUser (config.json).
import { chmodSync, mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { execa, type ResultPromise } from "execa";
import { afterAll, beforeAll, expect, it } from "vitest";
import { startFakeConnect } from "../connect/fake-connect.mjs";
import { createHost, describeAsRoot, type Account, type Host } from "./harness.js";

const vault = { vaults: { V: { items: { A: { fields: { one: "connect-1" } } } } } };
const fakeConnect = join(import.meta.dirname, "../connect/fake-connect.mjs");

describeAsRoot("user mode: the Connect server's owner on loopback", () => {
  let host: Host;
  let u0: Account;
  let u1: Account;

  beforeAll(async () => {
    host = await createHost({ users: 2, vault });
    [u0, u1] = host.users as [Account, Account];
    host.writeMapfile(`${u0.name} op://V/A/one one.txt\n`);
    mkdirSync(join(host.dir, "fake"), { mode: 0o755 });
    writeFileSync(join(host.dir, "fake", "vault.json"), JSON.stringify(vault), { mode: 0o644 });
    writeFileSync(join(host.dir, "fake", "token"), host.token, { mode: 0o644 });
    chmodSync(join(host.dir, "fake", "token"), 0o644);
  });
  afterAll(async () => {
    await host?.destroy();
  });

  /** fake-connect.mjs as `user`, logging each request it sees. */
  async function startAs(user: Account) {
    const child: ResultPromise = execa(
      "setpriv",
      [
        "--reuid",
        String(user.uid),
        "--regid",
        String(user.gid),
        "--clear-groups",
        "--",
        process.execPath,
        fakeConnect,
        "--vault",
        join(host.dir, "fake", "vault.json"),
        "--token-file",
        join(host.dir, "fake", "token"),
        "--log-requests",
      ],
      { reject: false, buffer: false, stdin: "ignore" },
    );
    const seen: string[] = [];
    let partial = "";
    const url = await new Promise<string>((resolve, reject) => {
      child.stdout!.on("data", (chunk: Buffer) => {
        partial += chunk.toString();
        const lines = partial.split("\n");
        partial = lines.pop()!;
        for (const line of lines) (line.startsWith("http") ? resolve : (l: string) => seen.push(l))(line);
      });
      child.once("exit", () => reject(new Error("fake-connect exited before listening")));
    });
    return {
      url,
      seen,
      async stop() {
        child.kill("SIGTERM");
        await child;
      },
    };
  }

  it("a server another user runs: 77, a clear line, and the server saw no request", async () => {
    const server = await startAs(u1);
    try {
      host.writeConfig({ source: { type: "connect", host: server.url } });
      const result = await host.run(u0, []);
      expect(result.stderr).toMatch(
        new RegExp(
          `refusing to send the Connect token to 127\\.0\\.0\\.1:\\d+: the server there runs as uid ${u1.uid}, not root or this process's uid ${host.svc.uid}`,
        ),
      );
      expect(result.exitCode).toBe(77);
      expect(server.seen).toEqual([]);
    } finally {
      await server.stop();
    }
  });

  it("config.json's source.listenerUser trusts that account", async () => {
    const server = await startAs(u1);
    try {
      host.writeConfig({ source: { type: "connect", host: server.url, listenerUser: u1.name } });
      const result = await host.run(u0, []);
      expect(result.exitCode, String(result.stderr)).toBe(0);
      expect(server.seen.length).toBeGreaterThan(0);
      expect(server.seen.every((line) => (JSON.parse(line) as { authorization: boolean }).authorization)).toBe(true);
    } finally {
      await server.stop();
    }
  });

  it("a server root runs is trusted", async () => {
    const fake = await startFakeConnect({ vault, token: host.token });
    try {
      host.writeConfig({ source: { type: "connect", host: fake.url } });
      const result = await host.run(u0, []);
      expect(result.exitCode, String(result.stderr)).toBe(0);
      expect(fake.requests.length).toBeGreaterThan(0);
    } finally {
      await fake.close();
    }
  });
});
