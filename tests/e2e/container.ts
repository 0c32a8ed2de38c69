/**
 * A throwaway Debian container running a real systemd (systemd-nspawn --boot; bookworm's 252 or
 * trixie's 257, whichever rootfs it is given), driven through nsenter because the host's PID 1
 * need not be systemd (then `machinectl` and `systemctl -M` cannot reach the container).
 *
 * Life cycle: `Container.create()` lays an overlay (or a reflink copy) over the cached rootfs,
 * the caller writes files into `root`, `boot()` starts nspawn in its own process group,
 * `cx()` runs commands inside, `teardown()` ends everything by PID and removes the run dir.
 */
import { spawn } from "node:child_process";
import { existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmdirSync, rmSync, writeFileSync } from "node:fs";
import { createConnection, type Server, type Socket } from "node:net";
import { join } from "node:path";

export interface RunResult {
  code: number;
  stdout: string;
  stderr: string;
  out: Buffer;
  ms: number;
}

export interface RunOptions {
  input?: string | Buffer;
  timeoutMs?: number;
  /** Resolve instead of rejecting on a non-zero exit. */
  allowFail?: boolean;
}

/** Run a host command without a shell; rejects on non-zero exit unless allowFail. */
export function run(cmd: string, args: string[], options: RunOptions = {}): Promise<RunResult> {
  const started = Date.now();
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { stdio: ["pipe", "pipe", "pipe"] });
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    child.stdout.on("data", (b: Buffer) => out.push(b));
    child.stderr.on("data", (b: Buffer) => err.push(b));
    const timer = setTimeout(() => child.kill("SIGKILL"), options.timeoutMs ?? 120_000);
    child.on("error", (e) => {
      clearTimeout(timer);
      reject(e);
    });
    child.on("close", (code, signal) => {
      clearTimeout(timer);
      const buf = Buffer.concat(out);
      const result = {
        code: code ?? 128,
        stdout: buf.toString("utf8"),
        stderr: Buffer.concat(err).toString("utf8"),
        out: buf,
        ms: Date.now() - started,
      };
      if (result.code !== 0 && !options.allowFail) {
        reject(new Error(`${cmd} ${args.join(" ")} → ${signal ?? result.code}\n${result.stderr}${result.stdout}`.slice(0, 4000)));
      } else resolve(result);
    });
    child.stdin.on("error", () => {}); // the command may exit before reading its input
    child.stdin.end(options.input ?? "");
  });
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

function childrenOf(pid: number): number[] {
  try {
    return readFileSync(`/proc/${pid}/task/${pid}/children`, "utf8").trim().split(/\s+/).filter(Boolean).map(Number);
  } catch {
    return [];
  }
}
const alive = (pid: number) => existsSync(`/proc/${pid}`);
const runBase = "/var/tmp/homelab-secrets-e2e";

/**
 * nspawn --keep-unit puts a container's `payload` cgroup under the cgroup it starts in, so two
 * containers started from one test process would share (and fight over) one. Each container
 * gets a cgroup of its own below ours instead; that also lets teardown end every process of
 * it at once (cgroup.kill), including the container's init, which nspawn puts in its own session.
 */
function ownCgroup2Dir(): string | undefined {
  try {
    const mount = readFileSync("/proc/self/mountinfo", "utf8")
      .split("\n")
      .map((line) => line.split(" "))
      .find((f) => f[f.indexOf("-") + 1] === "cgroup2");
    const own = readFileSync("/proc/self/cgroup", "utf8")
      .split("\n")
      .find((l) => l.startsWith("0::"));
    if (!mount || !own) return undefined;
    return join(mount[4]!, own.slice(3));
  } catch {
    return undefined;
  }
}

function killCgroup(dir: string): void {
  try {
    writeFileSync(join(dir, "cgroup.kill"), "1");
  } catch {
    /* gone already, or a kernel without cgroup.kill */
  }
}

/** rmdir a cgroup tree, children first (cgroups cannot be removed recursively). */
function removeCgroup(dir: string): void {
  try {
    for (const entry of readdirSync(dir, { withFileTypes: true })) if (entry.isDirectory()) removeCgroup(join(dir, entry.name));
    rmdirSync(dir);
  } catch {
    /* still has processes, or gone */
  }
}

/** The container's init: the nspawn child that is PID 1 in its own PID namespace. */
function findInit(nspawn: number): number | undefined {
  for (const pid of childrenOf(nspawn)) {
    try {
      const nspid = /^NSpid:\s+(.*)$/m
        .exec(readFileSync(`/proc/${pid}/status`, "utf8"))?.[1]
        ?.trim()
        .split(/\s+/);
      if (nspid && nspid.length > 1 && nspid.at(-1) === "1") return pid;
    } catch {
      /* exited meanwhile */
    }
  }
  return undefined;
}

/**
 * Remove what a crashed earlier run left behind (its test process is gone): end its nspawn
 * process group by the recorded id, unmount its overlay, delete its run dir.
 */
async function sweepStale(): Promise<void> {
  for (const entry of readdirSync(runBase)) {
    const dir = join(runBase, entry);
    const read = (f: string) => Number(readFileSync(join(dir, f), "utf8").trim() || 0);
    let owner = 0;
    try {
      owner = read("owner");
    } catch {
      continue; // being created right now, or not ours
    }
    if (owner && alive(owner)) continue;
    try {
      const pgid = read("nspawn-pgid");
      if (pgid && alive(pgid)) process.kill(-pgid, "SIGKILL");
    } catch {
      /* never booted, or already gone */
    }
    try {
      const cgroup = readFileSync(join(dir, "cgroup"), "utf8").trim();
      killCgroup(cgroup);
      await sleep(200);
      removeCgroup(cgroup);
    } catch {
      /* no cgroup of its own */
    }
    await run("umount", ["-l", join(dir, "root")], { allowFail: true });
    rmSync(dir, { recursive: true, force: true });
  }
}

export interface JournalEntry {
  message: string;
  priority: number;
  /** microseconds since the epoch */
  realtimeUs: bigint;
  pid: number;
  unit: string;
}

export interface ContainerOptions {
  name: string;
  rootfs: string;
  /** host path → container path, read-only */
  bindsRo?: Record<string, string>;
  /** seconds before `timeout` ends nspawn no matter what (default 600) */
  lifetimeSec?: number;
  /**
   * Share the host's network instead of a private one with only loopback (default false): with
   * it, a test's server on a fixed loopback port would answer every container on the machine.
   */
  hostNetwork?: boolean;
}

/** A forward from a port inside the container to the host; `close()` refuses new connections and cuts open ones. */
export interface PortForward {
  close(): Promise<void>;
}

// Runs inside the container's network namespace (host mount namespace, the host's node): listen,
// hand the listening socket to the parent over IPC, exit. Connections only arrive after that.
const listenerScript = `
const net = require("node:net");
const [host, port] = process.argv.slice(1);
const server = net.createServer();
server.once("error", (e) => { process.send({ error: e.message }, () => process.exit(1)); });
server.listen({ host, port: Number(port) }, () => process.send({ listening: true }, server, () => { server.close(); process.disconnect(); }));
`;

export class Container {
  readonly name: string;
  readonly runDir: string;
  readonly root: string;
  private overlay = false;
  private timeoutPid = 0;
  private leader = 0;
  private cgroup: string | undefined;
  private readonly cleanups: Array<() => void | Promise<void>> = [];

  private constructor(
    private readonly options: ContainerOptions,
    runDir: string,
  ) {
    this.name = options.name;
    this.runDir = runDir;
    this.root = join(runDir, "root");
  }

  /** Prepare a private root over the cached rootfs: overlayfs if possible, else a reflink copy. */
  static async create(options: ContainerOptions): Promise<Container> {
    mkdirSync(runBase, { recursive: true });
    await sweepStale();
    const c = new Container(options, mkdtempSync(`${runBase}/${options.name}-`));
    for (const d of ["root", "upper", "work"]) mkdirSync(join(c.runDir, d));
    writeFileSync(join(c.runDir, "owner"), `${process.pid}\n`);
    const mount = await run(
      "mount",
      ["-t", "overlay", "overlay", "-o", `lowerdir=${options.rootfs},upperdir=${c.runDir}/upper,workdir=${c.runDir}/work`, c.root],
      { allowFail: true },
    );
    if (mount.code === 0) c.overlay = true;
    else await run("cp", ["-a", "--reflink=auto", `${options.rootfs}/.`, c.root], { timeoutMs: 300_000 });
    Container.live.add(c);
    return c;
  }

  /** Boot systemd and wait until it is `running` or `degraded`. */
  async boot(): Promise<void> {
    const binds = Object.entries(this.options.bindsRo ?? {}).map(([h, c]) => `--bind-ro=${h}:${c}`);
    const lifetime = String(this.options.lifetimeSec ?? 600);
    const console = join(this.runDir, "console.log");
    const parent = ownCgroup2Dir();
    if (parent) {
      try {
        this.cgroup = join(parent, `hs-e2e-${this.runDir.split("/").at(-1)}`);
        mkdirSync(this.cgroup);
        writeFileSync(join(this.runDir, "cgroup"), `${this.cgroup}\n`);
      } catch {
        this.cgroup = undefined;
      }
    }
    const child = spawn(
      "sh",
      [
        "-c",
        '[ -z "$HS_E2E_CGROUP" ] || echo $$ > "$HS_E2E_CGROUP/cgroup.procs" || exit 90; exec timeout --kill-after=10 "$@" >"$0" 2>&1 </dev/null',
        console,
        lifetime,
        "systemd-nspawn",
        "-D",
        this.root,
        "--boot",
        `--machine=${this.name}`,
        "--register=no",
        "--keep-unit",
        "--console=read-only",
        "-q",
        ...(this.options.hostNetwork ? [] : ["--private-network"]),
        ...binds,
      ],
      { detached: true, stdio: "ignore", env: { ...process.env, SYSTEMD_NSPAWN_UNIFIED_HIERARCHY: "1", HS_E2E_CGROUP: this.cgroup ?? "" } },
    );
    child.unref();
    this.timeoutPid = child.pid!;
    writeFileSync(join(this.runDir, "nspawn-pgid"), `${this.timeoutPid}\n`);
    const deadline = Date.now() + 30_000;
    while (!this.leader) {
      const nspawn = childrenOf(this.timeoutPid)[0];
      const init = nspawn ? findInit(nspawn) : undefined;
      if (init) this.leader = init;
      else if (!alive(this.timeoutPid) || Date.now() > deadline) throw new Error(`nspawn did not start:\n${this.console()}`);
      else await sleep(20);
    }
    for (;;) {
      const state = await this.cx(["systemctl", "is-system-running"], { allowFail: true }).catch(() => undefined);
      if (state && /running|degraded/.test(state.stdout)) return;
      if (Date.now() > deadline) throw new Error(`container did not boot: ${state?.stdout}\n${this.console()}`);
      await sleep(50);
    }
  }

  console(): string {
    try {
      return readFileSync(join(this.runDir, "console.log"), "utf8").slice(-4000);
    } catch {
      return "";
    }
  }

  /** Run a command inside the container, with a clean environment. */
  cx(argv: string[], options: RunOptions = {}): Promise<RunResult> {
    if (!this.leader) throw new Error("container is not booted");
    return run(
      "nsenter",
      [
        "-t",
        String(this.leader),
        "-a",
        "--",
        "/usr/bin/env",
        "-i",
        "PATH=/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        "LANG=C.UTF-8",
        "SYSTEMD_COLORS=0",
        ...argv,
      ],
      options,
    );
  }

  /** A listening TCP socket on `host:port` in the container's network namespace, accepted in this process. */
  async listenInside(port: number, host = "127.0.0.1"): Promise<Server> {
    if (!this.leader) throw new Error("container is not booted");
    const child = spawn("nsenter", ["-t", String(this.leader), "-n", "--", process.execPath, "-e", listenerScript, host, String(port)], {
      stdio: ["ignore", "ignore", "pipe", "ipc"],
    });
    const err: Buffer[] = [];
    child.stderr!.on("data", (b: Buffer) => err.push(b));
    return new Promise<Server>((resolve, reject) => {
      child.once("error", reject);
      child.on("message", (message: { listening?: boolean; error?: string }, handle?: unknown) => {
        if (message.listening && handle) resolve(handle as Server);
        else reject(new Error(`listen on ${host}:${port} in ${this.name}: ${message.error ?? "no socket handed over"}`));
      });
      child.once("exit", (code) =>
        reject(new Error(`listen on ${host}:${port} in ${this.name}: exit ${code}\n${Buffer.concat(err).toString("utf8")}`)),
      );
    });
  }

  /**
   * Forward `host:port` inside the container to `targetPort` on the host's loopback, byte for
   * byte: a reset by the target is passed on as a reset, an end as an end. Nothing listens
   * inside before this nor after `close()`, so a connection is refused then, as with no server.
   */
  async forward(port: number, targetPort: number, host = "127.0.0.1"): Promise<PortForward> {
    const server = await this.listenInside(port, host);
    const open = new Set<Socket>();
    server.on("connection", (inside: Socket) => {
      const target = createConnection({ host: "127.0.0.1", port: targetPort });
      open.add(inside).add(target);
      inside.on("close", () => open.delete(inside));
      target.on("close", () => open.delete(target));
      inside.pipe(target);
      target.pipe(inside);
      target.on("error", () => inside.resetAndDestroy());
      inside.on("error", () => target.resetAndDestroy());
    });
    this.onTeardown(() => new Promise<void>((r) => server.close(() => r())));
    return {
      close: () =>
        new Promise<void>((resolve) => {
          server.close(() => resolve());
          for (const socket of open) socket.destroy();
        }),
    };
  }

  /** `sh -c script` inside; extra args become $1.. */
  sh(script: string, args: string[] = [], options: RunOptions = {}): Promise<RunResult> {
    return this.cx(["sh", "-c", script, "sh", ...args], options);
  }

  async writeFile(path: string, content: string | Buffer, mode = "0644", owner = "root:root"): Promise<void> {
    await this.sh(
      'umask 077; cat > "$1.e2e-tmp" && chown "$3" "$1.e2e-tmp" && chmod "$2" "$1.e2e-tmp" && mv -f "$1.e2e-tmp" "$1"',
      [path, mode, owner],
      { input: content },
    );
  }

  /** `systemctl show` properties as a record. */
  async show(unit: string, props: string[]): Promise<Record<string, string>> {
    const r = await this.cx(["systemctl", "show", unit, ...props.map((p) => `--property=${p}`)]);
    return Object.fromEntries(
      r.stdout
        .split("\n")
        .filter(Boolean)
        .map((l) => [l.slice(0, l.indexOf("=")), l.slice(l.indexOf("=") + 1)]),
    );
  }

  /** Poll ActiveState until it is `state` or the time is up; returns the last state seen. */
  async waitForState(unit: string, state: string, timeoutMs: number): Promise<string> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const { ActiveState } = await this.show(unit, ["ActiveState"]);
      if (ActiveState === state || Date.now() > deadline) return ActiveState ?? "";
      await sleep(50);
    }
  }

  /** This boot's journal, optionally for some units; messages decoded even when binary. */
  async journal(units: string[] = [], since?: string): Promise<JournalEntry[]> {
    const args = ["journalctl", "-b0", "--no-pager", "-o", "json", ...units.flatMap((u) => ["-u", u])];
    if (since) args.push(`--since=${since}`);
    const r = await this.cx(args, { allowFail: true });
    return r.stdout
      .split("\n")
      .filter(Boolean)
      .map((line) => {
        const e = JSON.parse(line) as Record<string, unknown>;
        const m = e["MESSAGE"];
        // journald's JSON: a string, or an array of bytes for a message that is not valid UTF-8.
        const message = Array.isArray(m) ? Buffer.from(m as number[]).toString("utf8") : typeof m === "string" ? m : "";
        return {
          message,
          priority: Number(e["PRIORITY"] ?? 6),
          realtimeUs: BigInt(String(e["__REALTIME_TIMESTAMP"])),
          pid: Number(e["_PID"] ?? 0),
          unit: [e["_SYSTEMD_UNIT"], e["UNIT"]].find((u): u is string => typeof u === "string") ?? "",
        };
      });
  }

  /** Make journald write out what it has, so a following query sees every line. */
  async syncJournal(): Promise<void> {
    await this.cx(["journalctl", "--sync"], { allowFail: true });
  }

  /** Run `fn` at teardown, after the container is gone (last registered runs first). */
  onTeardown(fn: () => void | Promise<void>): void {
    this.cleanups.push(fn);
  }

  /** Power off; end by PID what does not go on its own; unmount; remove the run dir; run the `onTeardown` hooks. */
  async teardown(): Promise<void> {
    Container.live.delete(this);
    if (this.leader && alive(this.leader)) {
      await this.cx(["systemctl", "poweroff", "--no-block"], { allowFail: true, timeoutMs: 5_000 }).catch(() => undefined);
      for (let i = 0; i < 100 && alive(this.timeoutPid); i++) await sleep(50);
    }
    this.kill();
    for (let i = 0; i < 100 && this.timeoutPid && alive(this.timeoutPid); i++) await sleep(50);
    for (let i = 0; i < 100 && this.leader && alive(this.leader); i++) await sleep(50);
    if (this.cgroup) removeCgroup(this.cgroup);
    if (this.overlay) await run("umount", ["-l", this.root], { allowFail: true });
    if (!process.env["HOMELAB_E2E_KEEP"]) rmSync(this.runDir, { recursive: true, force: true });
    for (const fn of this.cleanups.splice(0).reverse()) await fn();
  }

  /** Synchronous last resort: SIGKILL the container's init and the nspawn process group. */
  kill(): void {
    if (this.cgroup) killCgroup(this.cgroup);
    for (const [pid, group] of [
      [this.leader, false],
      [this.timeoutPid, true],
    ] as const) {
      if (!pid) continue;
      try {
        process.kill(group ? -pid : pid, "SIGKILL");
      } catch {
        /* already gone */
      }
    }
  }

  static readonly live = new Set<Container>();
}

// If the worker dies without afterAll (crash, Ctrl-C), still end every container by PID.
process.once("exit", () => {
  for (const c of Container.live) c.kill();
});
