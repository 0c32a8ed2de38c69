/**
 * A real per-user setup for the wrapper suites, as root: a service account and ordinary
 * users (unique names per run, removed afterwards), a private wrapper build with its own
 * config directory, installed SUID+SGID to the service account, and /run/user/<uid>
 * directories standing in for logind's.
 *
 * Without root (or cc, setpriv, useradd, a built helper/dist) the suites are skipped with
 * a loud warning; with CI=true a missing prerequisite fails instead.
 */
import { execFileSync } from "node:child_process";
import { randomBytes } from "node:crypto";
import {
  chmodSync,
  chownSync,
  copyFileSync,
  cpSync,
  existsSync,
  lstatSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  readlinkSync,
  realpathSync,
  rmSync,
  writeFileSync,
} from "node:fs";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { execa, type Result, type ResultPromise } from "execa";
import { describe, it } from "vitest";
import { buildWrapper } from "../../helper/scripts/build-wrapper.mjs";
import { checkCliTree, checkNodeBinary } from "../../helper/src/user/tree-check.js";

export const repoRoot = resolve(dirname(fileURLToPath(import.meta.url)), "../..");
const distCli = join(repoRoot, "helper/dist/cli.js");

/**
 * The wrapper runs only node and a CLI tree that are root's (see the C file). A checkout or
 * a node owned by a CI user is copied into a root-owned temp dir, shared by the hosts of a
 * test file and removed with the last of them.
 */
let installed: { cli: string; node: string; copy?: string } | undefined;
let hostsAlive = 0;
function installedTree(): { cli: string; node: string } {
  if (installed) return installed;
  let cli = distCli;
  let node = realpathSync(process.execPath);
  const cliUnsafe = existsSync(distCli) && checkCliTree(distCli).problem !== undefined;
  const nodeUnsafe = checkNodeBinary(node).problem !== undefined;
  if ((cliUnsafe || nodeUnsafe) && process.getuid?.() === 0) {
    const dir = mkdtempSync("/tmp/hs-tree-");
    chmodSync(dir, 0o755);
    if (cliUnsafe) {
      mkdirSync(join(dir, "helper"));
      copyFileSync(join(repoRoot, "package.json"), join(dir, "package.json"));
      cpSync(join(repoRoot, "helper/dist"), join(dir, "helper/dist"), { recursive: true });
      cpSync(join(repoRoot, "node_modules"), join(dir, "node_modules"), { recursive: true, verbatimSymlinks: true });
      cli = join(dir, "helper/dist/cli.js");
    }
    if (nodeUnsafe) {
      copyFileSync(node, join(dir, "node"));
      node = join(dir, "node");
    }
    execFileSync("chown", ["-R", "0:0", dir]);
    execFileSync("chmod", ["-R", "go-w", dir]);
    installed = { cli, node, copy: dir };
    return installed;
  }
  installed = { cli, node };
  return installed;
}

/** The CLI entry point the test wrapper execs (the same one a real install uses). */
export function cliPath(): string {
  return installedTree().cli;
}

/** The node binary the test wrapper execs. */
export function nodePath(): string {
  return installedTree().node;
}

function which(command: string): boolean {
  try {
    execFileSync("sh", ["-c", `command -v ${command}`], { stdio: "ignore" });
    return true;
  } catch {
    return false;
  }
}

export function missingPrerequisite(): string | undefined {
  if (process.getuid?.() !== 0) return "not running as root (needs real users, chown and a SUID install)";
  for (const tool of ["cc", "setpriv", "useradd", "userdel", "groupdel"]) if (!which(tool)) return `${tool} is not installed`;
  if (!existsSync(distCli)) return "helper/dist is not built (run npm run build)";
  return undefined;
}

/** describe() for suites that need root; skips loudly, or fails under CI=true. */
export function describeAsRoot(name: string, body: () => void): void {
  const missing = missingPrerequisite();
  if (!missing) {
    describe(name, body);
    return;
  }
  if (process.env["CI"] === "true") {
    describe(name, () => {
      it("has its prerequisites (CI=true: a missing prerequisite is a failure)", () => {
        throw new Error(`${name}: ${missing}`);
      });
    });
    return;
  }
  console.warn(`\n*** SKIPPING "${name}": ${missing} ***\n`);
  describe.skip(name, body);
}

/** The execa options of Host.run() and Host.runAs(): text output; a failed command resolves, it does not reject. */
interface RunOptions {
  readonly env: Record<string, string>;
  readonly extendEnv: false;
  readonly reject: false;
  readonly cwd: string;
  readonly timeout?: number;
}
/** A running Host.run()/runAs() command (stdout and stderr are strings once it finishes). */
export type RunPromise = ResultPromise<RunOptions>;
/** A finished Host.run()/runAs() command. */
export type RunResult = Result<RunOptions>;

export interface Account {
  readonly name: string;
  readonly uid: number;
  readonly gid: number;
}

export interface Host {
  readonly dir: string;
  readonly configDir: string;
  readonly wrapper: string;
  readonly svc: Account;
  readonly users: Account[];
  readonly token: string;
  readonly vaultFile: string;
  /** The service account's state directory (per-user rate limit), 0700. */
  readonly stateDir: string;
  writeMapfile(text: string, options?: { owner?: number; group?: number; mode?: number }): void;
  writeVault(vault: unknown): void;
  writeConfig(config: unknown): void;
  secretsDir(user: Account): string;
  /** Run the wrapper as `user` with only the given environment (plus PATH). */
  run(user: Account, args: string[], options?: { env?: Record<string, string>; timeoutMs?: number }): RunPromise;
  /** Run any command as `user` with only the given environment (plus PATH). */
  runAs(user: Account, command: string, args: string[], options?: { env?: Record<string, string>; timeoutMs?: number }): RunPromise;
  destroy(): Promise<void>;
}

function idOf(kind: "-u" | "-g", name: string): number {
  return Number(execFileSync("id", [kind, name], { encoding: "utf8" }).trim());
}

export interface HostOptions {
  readonly users: number;
  readonly lockTimeoutSeconds?: number;
  /** The fetcher's hard time limit (SIGALRM), see the wrapper's HS_FETCHER_LIMIT_S. */
  readonly fetcherLimitSeconds?: number;
  readonly vault?: unknown;
}

export async function createHost(options: HostOptions): Promise<Host> {
  const tag = `hst${randomBytes(3).toString("hex")}`;
  const created: string[] = [];
  const runDirs: string[] = [];
  const dir = mkdtempSync("/tmp/hs-user-");
  hostsAlive++;
  let destroyed = false;
  const destroyNow = (): void => {
    const uids = new Set(created.map((name) => idOf("-u", name)));
    killProcessesOf(uids);
    for (const name of created) {
      try {
        execFileSync("userdel", [name], { stdio: "ignore" });
      } catch {
        /* reported below */
      }
      try {
        execFileSync("groupdel", [name], { stdio: "ignore" });
      } catch {
        /* userdel usually removed it */
      }
    }
    for (const runDir of runDirs) rmSync(runDir, { recursive: true, force: true });
    rmSync(dir, { recursive: true, force: true });
    if (!destroyed && --hostsAlive === 0 && installed?.copy) {
      rmSync(installed.copy, { recursive: true, force: true });
      installed = undefined;
    }
    destroyed = true;
    const left = created.filter((name) => {
      try {
        execFileSync("id", [name], { stdio: "ignore" });
        return true;
      } catch {
        return false;
      }
    });
    if (left.length > 0) throw new Error(`could not remove test users ${left.join(", ")}`);
  };
  const destroy = (): Promise<void> =>
    new Promise((resolve) => {
      destroyNow();
      resolve();
    });
  try {
    chmodSync(dir, 0o755);
    const add = (name: string, system: boolean): Account => {
      execFileSync("useradd", [...(system ? ["-r"] : []), "-M", "-U", "-s", system ? "/usr/sbin/nologin" : "/bin/sh", name], {
        stdio: "pipe",
      });
      created.push(name);
      return { name, uid: idOf("-u", name), gid: idOf("-g", name) };
    };
    const svc = add(`${tag}svc`, true);
    const users = Array.from({ length: options.users }, (_, i) => add(`${tag}u${i}`, false));

    const configDir = join(dir, "etc");
    mkdirSync(configDir, { mode: 0o755 });
    const vaultDir = join(dir, "vault");
    mkdirSync(vaultDir, { mode: 0o700 });
    chownSync(vaultDir, svc.uid, svc.gid);
    const vaultFile = join(vaultDir, "vault.json");
    const token = `test-token-${randomBytes(12).toString("hex")}`;
    writeOwned(join(configDir, "token"), `${token}\n`, svc.uid, svc.gid, 0o600);

    const stateDir = join(dir, "state");
    mkdirSync(stateDir, { mode: 0o700 });
    chownSync(stateDir, svc.uid, svc.gid);

    const binDir = join(dir, "bin");
    mkdirSync(binDir, { mode: 0o755 });
    const wrapper: string = buildWrapper({
      configDir,
      out: join(binDir, "homelab-secrets-user"),
      cli: cliPath(),
      node: nodePath(),
      stateDir,
      ...(options.lockTimeoutSeconds ? { lockTimeoutSeconds: options.lockTimeoutSeconds } : {}),
      ...(options.fetcherLimitSeconds ? { fetcherLimitSeconds: options.fetcherLimitSeconds } : {}),
    });
    chownSync(wrapper, svc.uid, svc.gid);
    chmodSync(wrapper, 0o6755);

    for (const user of users) {
      const runDir = `/run/user/${user.uid}`;
      rmSync(runDir, { recursive: true, force: true });
      mkdirSync(runDir, { recursive: true, mode: 0o700 });
      chownSync(runDir, user.uid, user.gid);
      chmodSync(runDir, 0o700);
      runDirs.push(runDir);
    }

    const host: Host = {
      dir,
      configDir,
      wrapper,
      svc,
      users,
      token,
      vaultFile,
      stateDir,
      writeMapfile(text, o = {}) {
        writeOwned(join(configDir, "mapfile"), text, o.owner ?? 0, o.group ?? svc.gid, o.mode ?? 0o640);
      },
      writeVault(vault) {
        writeOwned(vaultFile, JSON.stringify(vault), svc.uid, svc.gid, 0o600);
      },
      writeConfig(config) {
        const path = join(configDir, "config.json");
        if (config === undefined) rmSync(path, { force: true });
        else writeOwned(path, JSON.stringify(config), 0, 0, 0o644);
      },
      secretsDir: (user) => `/run/user/${user.uid}/secrets`,
      run(user, args, o = {}) {
        // env(1) runs as the user already: setpriv itself never sees the test's variables.
        const vars = Object.entries({ PATH: "/usr/bin:/bin", ...o.env }).map(([k, v]) => `${k}=${v}`);
        const runOptions: RunOptions = {
          env: { PATH: "/usr/bin:/bin" },
          extendEnv: false,
          reject: false,
          cwd: "/",
          timeout: o.timeoutMs ?? 60_000,
        };
        return execa("setpriv", [...asUser(user), "/usr/bin/env", "-i", ...vars, wrapper, ...args], runOptions);
      },
      runAs(user, command, args, o = {}) {
        const vars = Object.entries({ PATH: "/usr/bin:/bin", ...o.env }).map(([k, v]) => `${k}=${v}`);
        const runOptions: RunOptions = {
          reject: false,
          cwd: "/",
          env: { PATH: "/usr/bin:/bin" },
          extendEnv: false,
          ...(o.timeoutMs ? { timeout: o.timeoutMs } : {}),
        };
        return execa("setpriv", [...asUser(user), "/usr/bin/env", "-i", ...vars, command, ...args], runOptions);
      },
      destroy,
    };
    host.writeVault(options.vault ?? { vaults: {} });
    host.writeConfig({ source: { type: "file", path: vaultFile } });
    host.writeMapfile("");
    return host;
  } catch (error) {
    await destroy().catch(() => undefined);
    throw error;
  }
}

function asUser(user: Account): string[] {
  return ["--reuid", String(user.uid), "--regid", String(user.gid), "--init-groups", "--"];
}

function writeOwned(path: string, text: string, uid: number, gid: number, mode: number): void {
  rmSync(path, { force: true });
  writeFileSync(path, text, { mode });
  chownSync(path, uid, gid);
  chmodSync(path, mode);
}

/**
 * Processes owned by the test accounts (all started by these tests), killed by pid. Only
 * our own pid namespace: a container (tests/e2e) may reuse the same uid numbers.
 */
export function processesOf(uids: ReadonlySet<number>): number[] {
  const pids: number[] = [];
  const ownNamespace = readlinkSync("/proc/self/ns/pid");
  for (const entry of readdirSync("/proc")) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      if (readlinkSync(`/proc/${entry}/ns/pid`) !== ownNamespace) continue;
      const status = readFileSync(`/proc/${entry}/status`, "utf8");
      const uidLine = /^Uid:\s+(\d+)\s+(\d+)\s+(\d+)/m.exec(status);
      if (uidLine && [1, 2, 3].some((i) => uids.has(Number(uidLine[i])))) pids.push(Number(entry));
    } catch {
      /* gone */
    }
  }
  return pids;
}

function killProcessesOf(uids: ReadonlySet<number>): void {
  for (const pid of processesOf(uids)) {
    try {
      process.kill(pid, "SIGKILL");
    } catch {
      /* gone */
    }
  }
}

export function modeOf(path: string): number {
  return lstatSync(path).mode & 0o7777;
}

/** Every path below `dir` (relative), sorted; [] when it does not exist. */
export function listTree(dir: string): string[] {
  if (!existsSync(dir)) return [];
  const out: string[] = [];
  const walk = (sub: string) => {
    for (const entry of readdirSync(join(dir, sub), { withFileTypes: true })) {
      const rel = sub ? `${sub}/${entry.name}` : entry.name;
      out.push(entry.isDirectory() ? `${rel}/` : rel);
      if (entry.isDirectory()) walk(rel);
    }
  };
  walk("");
  return out.sort();
}

/** Poll `check` every 50 ms until it returns a value or `timeoutMs` passes (then undefined). */
export async function waitFor<T>(check: () => T | undefined, timeoutMs: number): Promise<T | undefined> {
  const until = Date.now() + timeoutMs;
  for (;;) {
    const value = check();
    if (value !== undefined) return value;
    if (Date.now() > until) return undefined;
    await new Promise((r) => setTimeout(r, 50));
  }
}
