/**
 * The host-wide --serialize lock must only ever be held by a process the caller can neither
 * signal nor block: otherwise any local user (even one without a mapfile entry) can freeze
 * the holder and make every other user's --serialize run give up. Each attack below freezes
 * the attacker's own run; another user's --serialize run must still get its turn.
 */
import { execFileSync } from "node:child_process";
import { chmodSync, readFileSync, statSync } from "node:fs";
import { createServer, type Server, type Socket } from "node:net";
import { join } from "node:path";
import { afterAll, afterEach, beforeAll, expect, it } from "vitest";
import { startFakeConnect } from "../connect/fake-connect.mjs";
import {
  cliPath,
  createHost,
  describeAsRoot,
  listTree,
  processesOf,
  type Account,
  type Host,
  type RunPromise,
  waitFor,
} from "./harness.js";

const vault = { vaults: { V: { items: { A: { fields: { one: "alpha-1" } } } } } };

describeAsRoot("the --serialize lock cannot be frozen by a caller", () => {
  let host: Host;
  let attacker: Account;
  let victim: Account;
  let stall = "";
  let fake: { url: string; close(): Promise<void> };
  let hanging: Server;
  const sockets = new Set<Socket>();
  let hangingUrl = "";
  let attack: RunPromise | undefined;

  beforeAll(async () => {
    host = await createHost({ users: 2, lockTimeoutSeconds: 12 });
    [attacker, victim] = host.users as [Account, Account];
    fake = await startFakeConnect({ vault, token: host.token, latencyMs: 100 });
    hanging = createServer((socket) => {
      sockets.add(socket);
      socket.on("close", () => sockets.delete(socket));
    });
    await new Promise<void>((resolve) => hanging.listen(0, "127.0.0.1", resolve));
    hangingUrl = `http://127.0.0.1:${(hanging.address() as { port: number }).port}`;
    host.writeConfig({ source: { type: "connect", host: fake.url } });
    host.writeMapfile(host.users.map((u) => `${u.name} op://V/A/one one.txt`).join("\n"));
    stall = join(host.dir, "bin", "stall");
    execFileSync("cc", ["-O2", "-o", stall, join(import.meta.dirname, "stall.c")]);
    chmodSync(stall, 0o755);
  });
  afterEach(async () => {
    // The attacker's processes, and a fetcher (service account) left frozen by an attack.
    attack?.kill("SIGKILL");
    for (const pid of processesOf(new Set([attacker.uid]))) killQuietly(pid);
    for (const pid of processesOf(new Set([host.svc.uid])))
      if (readCmdline(pid).includes(cliPath()) || readCmdline(pid).includes(host.wrapper)) killQuietly(pid);
    await attack;
    attack = undefined;
    for (const s of sockets) s.destroy();
    host.writeConfig({ source: { type: "connect", host: fake.url } });
  });
  afterAll(async () => {
    await fake?.close();
    await new Promise((resolve) => hanging?.close(resolve));
    await host?.destroy();
  });

  const victimGetsItsTurn = async () => {
    const r = await host.run(victim, ["--serialize"]);
    expect(r.exitCode, r.stderr).toBe(0);
    expect(listTree(host.secretsDir(victim))).toEqual(["one.txt"]);
  };

  it("a caller blocking the fetcher's stderr (a terminal with output suspended) does not keep the lock", async () => {
    attack = host.runAs(attacker, stall, ["xoff", host.wrapper, "--serialize", "-v"]);
    await waitForOutput(attack, /started \d+/);
    await new Promise((r) => setTimeout(r, 1500)); // the fetcher has the lock and is logging by now
    await victimGetsItsTurn();
  });

  it("a caller typing ^Z on their terminal does not stop the fetcher while it holds the lock", async () => {
    host.writeConfig({ source: { type: "connect", host: hangingUrl } });
    attack = host.runAs(attacker, stall, ["tstp", host.wrapper, "--serialize", "--deadline", "2"]);
    await waitForOutput(attack, /started \d+/);
    // The attacker's fetcher holds the lock and waits on the backend.
    expect(await waitFor(() => (sockets.size > 0 ? true : undefined), 15_000)).toBe(true);
    host.writeConfig({ source: { type: "connect", host: fake.url } }); // the attacker's fetcher keeps its open config
    attack.stdin.write("\n");
    await waitForOutput(attack, /sent \^Z/);
    await victimGetsItsTurn();
  });

  it("a caller sending SIGSTOP (their real uid) to the wrapper never catches it holding the lock", async () => {
    const inode = statSync(join(host.configDir, "mapfile")).ino;
    attack = host.runAs(attacker, stall, ["stop", String(inode), "1500", host.wrapper, "--serialize"]);
    const outcome = await waitForOutput(attack, /holding \d+ after \d+ tries|no luck after \d+ tries/, 120_000);
    console.info(`SIGSTOP race: ${outcome}`);
    await victimGetsItsTurn();
    expect(outcome).toMatch(/no luck/);
  }, 150_000);
});

function killQuietly(pid: number): void {
  try {
    process.kill(pid, "SIGKILL");
  } catch {
    /* gone */
  }
}

function readCmdline(pid: number): string {
  try {
    return readFileSync(`/proc/${pid}/cmdline`, "utf8");
  } catch {
    return "";
  }
}

function waitForOutput(run: RunPromise, pattern: RegExp, timeoutMs = 15_000): Promise<string> {
  return new Promise((resolve, reject) => {
    let seen = "";
    const timer = setTimeout(() => reject(new Error(`timed out waiting for ${pattern} in: ${seen}`)), timeoutMs);
    const check = () => {
      const match = pattern.exec(seen);
      if (match) {
        clearTimeout(timer);
        resolve(match[0]);
        return true;
      }
      return false;
    };
    if (check()) return;
    run.stdout.on("data", (chunk: Buffer) => {
      seen += chunk.toString();
      check();
    });
  });
}
