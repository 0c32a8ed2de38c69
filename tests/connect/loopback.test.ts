// Security issue 13, item 4 (service mode): over plain http to loopback, the token goes only
// to a server run by root, by the helper's own account or by source.listenerUser. The fake
// Connect server runs as a real process of a real account; it logs every request it sees.
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { networkInterfaces, tmpdir } from "node:os";
import { join } from "node:path";
import { execa, type ResultPromise } from "execa";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createAccount, rootSkipReason, type TestAccount } from "../root/root-env.js";

const cli = join(import.meta.dirname, "../../helper/dist/cli.js");
const fakeConnect = join(import.meta.dirname, "fake-connect.mjs");
const skip = rootSkipReason(["setpriv"]);
const token = "loopback-test-token-8c1d2e";
const vault = { vaults: { Lab: { items: { App: { fields: { password: "pw-loopback" } } } } } };

interface Running {
  readonly url: string;
  /** Requests the server saw so far. */
  readonly seen: () => { method: string; path: string; authorization: boolean }[];
  stop(): Promise<void>;
}

/** Start fake-connect.mjs as `account` (root when undefined) on `host`. */
async function startAs(work: string, account: TestAccount | undefined, host = "127.0.0.1"): Promise<Running> {
  const asUser = account ? ["setpriv", "--reuid", String(account.uid), "--regid", String(account.gid), "--clear-groups", "--"] : [];
  const args = [
    ...asUser,
    process.execPath,
    fakeConnect,
    "--vault",
    join(work, "fake", "vault.json"),
    "--token-file",
    join(work, "fake", "token"),
    "--host",
    host,
    "--log-requests",
  ];
  const child: ResultPromise = execa(args[0]!, args.slice(1), { reject: false, buffer: false, stdin: "ignore" });
  const lines: string[] = [];
  let partial = "";
  const url = await new Promise<string>((resolve, reject) => {
    child.stdout!.on("data", (chunk: Buffer) => {
      partial += chunk.toString();
      const complete = partial.split("\n");
      partial = complete.pop()!;
      for (const line of complete) {
        if (line.startsWith("http")) resolve(line);
        else lines.push(line);
      }
    });
    child.once("exit", () => reject(new Error("fake-connect exited before listening")));
  });
  return {
    url,
    seen: () => lines.map((line) => JSON.parse(line) as { method: string; path: string; authorization: boolean }),
    async stop() {
      child.kill("SIGTERM");
      await child;
    },
  };
}

describe.skipIf(skip !== undefined)("connect over plain http to loopback: who owns the server", () => {
  let work: string;
  let squatter: TestAccount;

  beforeAll(() => {
    work = mkdtempSync(join(tmpdir(), "hs-loopback-"));
    chmodSync(work, 0o755);
    mkdirSync(join(work, "fake"), { mode: 0o755 });
    // The fake server's own copies, readable by whichever account runs it.
    writeFileSync(join(work, "fake", "vault.json"), JSON.stringify(vault), { mode: 0o644 });
    writeFileSync(join(work, "fake", "token"), token, { mode: 0o644 });
    writeFileSync(join(work, "op-connect-token"), `${token}\n`, { mode: 0o600 });
    squatter = createAccount();
  });
  afterAll(() => {
    squatter?.remove();
    rmSync(work, { recursive: true, force: true });
  });

  const fetch = (name: string, url: string, extra: Record<string, unknown> = {}) => {
    const outputDir = join(work, "out", name);
    const specFile = join(work, `${name}.json`);
    const source = { type: "connect", host: url, tokenFile: join(work, "op-connect-token"), ...extra };
    writeFileSync(specFile, JSON.stringify({ version: 1, name, outputDir, source, files: { password: { ref: "op://Lab/App/password" } } }));
    return {
      outputDir,
      result: execa("node", [cli, "fetch", "--spec", specFile, "--deadline", "20"], { reject: false, env: { JOURNAL_STREAM: "" } }),
    };
  };

  it("a server another user runs gets no request at all: 77 and a clear line, nothing written", async () => {
    const server = await startAs(work, squatter);
    try {
      const { outputDir, result } = fetch("squatted", server.url);
      const { exitCode, stderr } = await result;
      expect(stderr).toMatch(
        new RegExp(`refusing to send the Connect token to 127\\.0\\.0\\.1:\\d+: the server there runs as uid ${squatter.uid}, not root`),
      );
      expect(exitCode).toBe(77);
      expect(server.seen()).toEqual([]);
      expect(existsSync(outputDir)).toBe(false);
    } finally {
      await server.stop();
    }
  });

  it("the same server is used when source.listenerUser names its account", async () => {
    const server = await startAs(work, squatter);
    try {
      const { outputDir, result } = fetch("configured", server.url, { listenerUser: squatter.name });
      const { exitCode, stderr } = await result;
      expect(exitCode, stderr).toBe(0);
      expect(readFileSync(join(outputDir, "password"), "utf8")).toBe("pw-loopback");
      expect(server.seen().length).toBeGreaterThan(0);
      expect(server.seen().every((r) => r.authorization)).toBe(true);
    } finally {
      await server.stop();
    }
  });

  it("a server root runs is trusted", async () => {
    const server = await startAs(work, undefined);
    try {
      const { outputDir, result } = fetch("root", server.url);
      const { exitCode, stderr } = await result;
      expect(exitCode, stderr).toBe(0);
      expect(stderr).not.toMatch(/warn/);
      expect(readFileSync(join(outputDir, "password"), "utf8")).toBe("pw-loopback");
    } finally {
      await server.stop();
    }
  });

  it("plain http to a non-loopback address works but warns that the token crosses the network unencrypted", async () => {
    const address = Object.values(networkInterfaces())
      .flat()
      .find((a) => a && a.family === "IPv4" && !a.internal)?.address;
    if (!address) {
      if (process.env["CI"] === "true") throw new Error("no non-loopback IPv4 address on this machine");
      console.warn("\n*** SKIPPED: no non-loopback IPv4 address on this machine ***\n");
      return;
    }
    const server = await startAs(work, squatter, address);
    try {
      const { result } = fetch("remote", server.url);
      const { exitCode, stderr } = await result;
      expect(exitCode, stderr).toBe(0);
      expect(stderr).toContain(`warn: the Connect host ${server.url} is plain http on a non-loopback address (${address})`);
    } finally {
      await server.stop();
    }
  });
});

// The kernel's uid for the accepted socket, checked with a real listener owned by root.
describe.skipIf(skip !== undefined)("socket tables", () => {
  it("finds this process's own listener and connection in /proc/net/tcp", async () => {
    const { createServer, connect } = await import("node:net");
    const { readSocketTables, serverOwners } = await import("../../helper/src/sources/loopback.js");
    const server = createServer(() => undefined);
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
    const port = (server.address() as { port: number }).port;
    const socket = connect(port, "127.0.0.1");
    await new Promise((resolve) => socket.once("connect", resolve));
    const owners = serverOwners(
      await readSocketTables(),
      { address: "127.0.0.1", port },
      { address: socket.localAddress!, port: socket.localPort! },
    );
    socket.destroy();
    server.close();
    expect(owners.listeners).toEqual([0]);
    expect(owners.accepted.every((uid) => uid === 0)).toBe(true);
  });
});
