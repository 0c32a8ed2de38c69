/**
 * What an ordinary user can do to the wrapper's process state, and what must hold anyway:
 * resource limits, a frozen cgroup, a closed stderr, no_new_privs, and a wrapper built
 * against a tree someone other than root can change. Real users and a real service account.
 */
import { execFileSync } from "node:child_process";
import {
  chmodSync,
  chownSync,
  copyFileSync,
  cpSync,
  existsSync,
  mkdirSync,
  readdirSync,
  readFileSync,
  rmdirSync,
  rmSync,
  statSync,
  writeFileSync,
} from "node:fs";
import { createServer, type Server, type Socket } from "node:net";
import { dirname, join } from "node:path";
import { execa } from "execa";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { buildWrapper } from "../../helper/scripts/build-wrapper.mjs";
import { startFakeConnect } from "../connect/fake-connect.mjs";
import {
  cliPath,
  createHost,
  describeAsRoot,
  listTree,
  nodePath,
  processesOf,
  repoRoot,
  type Account,
  type Host,
  type RunPromise,
  waitFor,
} from "./harness.js";

const vault = { vaults: { V: { items: { A: { fields: { one: "alpha-1" } } } } } };
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** The unified (v2) cgroup hierarchy, where cgroup.freeze lives; undefined when absent. */
function cgroup2Root(): string | undefined {
  for (const candidate of ["/sys/fs/cgroup/unified", "/sys/fs/cgroup"]) {
    if (existsSync(join(candidate, "cgroup.procs")) && existsSync(join(candidate, "cgroup.controllers"))) return candidate;
  }
  return undefined;
}

describeAsRoot("the wrapper against a hostile caller's process state", () => {
  let host: Host;
  let attacker: Account;
  let victim: Account;
  let fake: { url: string; close(): Promise<void> };
  let hanging: Server;
  const sockets = new Set<Socket>();
  let hangingUrl = "";
  let attack: RunPromise | undefined;

  const svcProcesses = () => processesOf(new Set([host.svc.uid]));

  beforeAll(async () => {
    host = await createHost({ users: 2, lockTimeoutSeconds: 14, fetcherLimitSeconds: 6 });
    [attacker, victim] = host.users as [Account, Account];
    fake = await startFakeConnect({ vault, token: host.token, latencyMs: 50 });
    hanging = createServer((socket) => {
      sockets.add(socket);
      socket.on("close", () => sockets.delete(socket));
    });
    await new Promise<void>((resolve) => hanging.listen(0, "127.0.0.1", resolve));
    hangingUrl = `http://127.0.0.1:${(hanging.address() as { port: number }).port}`;
    // Written once: --serialize locks the mapfile's inode.
    host.writeMapfile(host.users.map((u) => `${u.name} op://V/A/one one.txt`).join("\n"));
  });
  const useFake = () => {
    host.writeConfig({ source: { type: "connect", host: fake.url }, userRateLimit: null });
  };
  afterEach(async () => {
    attack?.kill("SIGKILL");
    await attack;
    attack = undefined;
    for (const pid of [...processesOf(new Set([attacker.uid])), ...svcProcesses()]) {
      try {
        process.kill(pid, "SIGKILL");
      } catch {
        /* gone */
      }
    }
    for (const s of sockets) s.destroy();
    sockets.clear();
    for (const user of host.users) execFileSync("rm", ["-rf", host.secretsDir(user)]);
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

  describe("resource limits", () => {
    it("prlimit --nproc=2 is refused before anything runs as the service account; others keep the lock", async () => {
      useFake();
      attack = host.runAs(attacker, "prlimit", ["--nproc=2", "--", host.wrapper, "--serialize"]);
      const outcome = await Promise.race([attack, sleep(4000).then(() => undefined)]);
      attack.kill("SIGKILL"); // what the attacker does after 4 s
      const r = await attack;
      attack = undefined;
      const killedAt = performance.now();
      const left = await waitFor(() => (svcProcesses().length === 0 ? true : undefined), 3000);
      console.info(
        `prlimit --nproc=2: service-account processes gone ${Math.round(performance.now() - killedAt)} ms after the caller was killed`,
      );
      expect(left, `service-account processes left behind: ${svcProcesses().join(",")}`).toBe(true);
      expect(outcome, "the run ended by itself").toBeDefined();
      expect(r.exitCode).toBe(78);
      expect(r.stderr.trim().split("\n")).toHaveLength(1);
      expect(r.stderr).toMatch(/RLIMIT_NPROC.*hard limit 2 .*below/);
      await victimGetsItsTurn();
    });

    it("soft limits the caller lowered are raised to the hard ones", async () => {
      useFake();
      const r = await host.runAs(attacker, "prlimit", ["--nproc=2:", "--nofile=5:", "--stack=16384:", "--", host.wrapper], {
        timeoutMs: 20_000,
      });
      expect(r.exitCode, r.stderr).toBe(0);
      expect(listTree(host.secretsDir(attacker))).toEqual(["one.txt"]);
    });

    it.each([
      ["RLIMIT_NOFILE", "--nofile=12"],
      ["RLIMIT_AS", "--as=100000000"],
      ["RLIMIT_STACK", "--stack=65536"],
      ["RLIMIT_CPU", "--cpu=1"],
    ])("a hard %s below what node needs is refused in one line (78)", async (name, flag) => {
      useFake();
      const r = await host.runAs(attacker, "prlimit", [flag, "--", host.wrapper, "--serialize"], { timeoutMs: 20_000 });
      expect(r.exitCode, r.stderr).toBe(78);
      expect(r.stderr.trim().split("\n")).toHaveLength(1);
      expect(r.stderr).toContain(name);
      expect(await waitFor(() => (svcProcesses().length === 0 ? true : undefined), 3000)).toBe(true);
    });
  });

  it("a fetcher frozen in its cgroup while holding the lock is killed at its time limit; the next run gets the lock", async () => {
    const root = cgroup2Root();
    if (!root) throw new Error("no cgroup v2 hierarchy with cgroup.freeze: this test needs one (mount cgroup2)");
    useFake();
    host.writeConfig({ source: { type: "connect", host: hangingUrl }, userRateLimit: null });
    attack = host.run(attacker, ["--serialize", "--deadline", "200"]);
    // The attacker's fetcher holds the lock and waits on the backend.
    expect(await waitFor(() => (sockets.size > 0 ? true : undefined), 15_000)).toBe(true);
    useFake(); // the attacker's fetcher keeps its open config
    const fetcher = svcProcesses().filter((pid) =>
      new RegExp(`^PPid:\\s+${attack!.pid}$`, "m").test(readFileSync(`/proc/${pid}/status`, "utf8")),
    );
    expect(fetcher.length).toBe(1);
    const inode = statSync(join(host.configDir, "mapfile")).ino;
    const holds = () =>
      readFileSync("/proc/locks", "utf8")
        .split("\n")
        .some((l) => new RegExp(`FLOCK .* ${fetcher[0]} [0-9a-f]+:[0-9a-f]+:${inode} `).test(l));
    expect(await waitFor(() => (holds() ? true : undefined), 15_000), "the attacker's fetcher holds the lock").toBe(true);
    const group = join(root, `hs-freeze-${attacker.name}`);
    mkdirSync(group);
    try {
      // What `systemd-run --user --scope` + `systemctl --user freeze` do to the caller's scope.
      for (const pid of [attack.pid!, ...fetcher]) writeFileSync(join(group, "cgroup.procs"), String(pid));
      writeFileSync(join(group, "cgroup.freeze"), "1");
      expect(await waitFor(() => (/^frozen 1$/m.test(readFileSync(join(group, "cgroup.events"), "utf8")) ? true : undefined), 5000)).toBe(
        true,
      );
      const started = performance.now();
      await victimGetsItsTurn();
      console.info(`frozen lock holder: the next --serialize run finished ${Math.round(performance.now() - started)} ms after the freeze`);
      // Dead: gone, or a zombie its frozen parent (the writer) has not reaped yet.
      const state = existsSync(`/proc/${fetcher[0]}`)
        ? /^State:\s+(\S)/m.exec(readFileSync(`/proc/${fetcher[0]}/status`, "utf8"))?.[1]
        : "gone";
      expect(state).toMatch(/^(gone|Z)$/);
      // Thawed, the attacker's run finds its fetcher dead: it writes nothing, and the run
      // that took over is untouched.
      writeFileSync(join(group, "cgroup.freeze"), "0");
      const stale = await attack;
      expect(stale.exitCode).toBe(75);
      expect(stale.stderr).toMatch(/nothing written/);
      expect(listTree(host.secretsDir(attacker))).toEqual([]);
      expect(readFileSync(join(host.secretsDir(victim), "one.txt"), "utf8")).toBe("alpha-1");
    } finally {
      writeFileSync(join(group, "cgroup.freeze"), "0");
      attack.kill("SIGKILL");
      await attack;
      await waitFor(() => (readFileSync(join(group, "cgroup.procs"), "utf8").trim() === "" ? true : undefined), 5000);
      rmdirSync(group);
    }
  }, 60_000);

  it("a caller who closed fd 2 still gets exit 0 from a successful run", async () => {
    useFake();
    const r = await host.runAs(attacker, "sh", ["-c", 'exec 2>&- && exec "$0"', host.wrapper], { timeoutMs: 20_000 });
    expect(r.exitCode, r.stderr).toBe(0);
    expect(listTree(host.secretsDir(attacker))).toEqual(["one.txt"]);
  });

  it("under no_new_privs the wrapper says that the set-id switch was prevented (78)", async () => {
    useFake();
    const r = await host.runAs(attacker, "setpriv", ["--no-new-privs", host.wrapper], { timeoutMs: 20_000 });
    expect(r.exitCode).toBe(78);
    expect(r.stderr.trim().split("\n")).toHaveLength(1);
    expect(r.stderr).toMatch(/no_new_privs.*(NoNewPrivileges)/);
  });

  it("a per-user rate limit on token reads, kept where the caller cannot reset it (75; others unaffected)", async () => {
    host.writeConfig({ source: { type: "connect", host: fake.url }, userRateLimit: { runs: 2, perSeconds: 3600 } });
    for (let i = 0; i < 2; i++) {
      const r = await host.run(attacker, []);
      expect(r.exitCode, r.stderr).toBe(0);
    }
    execFileSync("rm", ["-rf", host.secretsDir(attacker)]);
    const refused = await host.run(attacker, []);
    expect(refused.exitCode, refused.stderr).toBe(75);
    expect(refused.stderr).toMatch(
      /rate limit: 2 fetches in the last 3600 s \(at most 2, config\.json userRateLimit\); try again in \d+ s; nothing written/,
    );
    expect(listTree(host.secretsDir(attacker))).toEqual([]);
    // Another user has their own budget.
    const other = await host.run(victim, []);
    expect(other.exitCode, other.stderr).toBe(0);
    // The count lives in the service account's 0700 directory: the caller can neither read nor reset it.
    const state = join(host.stateDir, String(attacker.uid));
    expect(statSync(state).uid).toBe(host.svc.uid);
    const reset = await host.runAs(attacker, "sh", ["-c", 'rm -f "$0" || exit 3; : > "$0" || exit 4', state]);
    expect(reset.exitCode).not.toBe(0);
    expect((await host.run(attacker, [])).exitCode).toBe(75);
    // Without a token (file source) there is no quota to protect.
    host.writeConfig({ source: { type: "file", path: host.vaultFile }, userRateLimit: { runs: 2, perSeconds: 3600 } });
    host.writeVault(vault);
    const fileRun = await host.run(attacker, []);
    expect(fileRun.exitCode, fileRun.stderr).toBe(0);
    rmSync(state);
  });

  it.each([
    [{ runs: 0, perSeconds: 60 }, /userRateLimit\.runs must be a positive integer/],
    [{ runs: 2 }, /userRateLimit\.perSeconds must be an integer/],
    [{ runs: 2, perSeconds: 60, burst: 1 }, /userRateLimit\.burst is not allowed/],
    ["often", /"userRateLimit" must be an object or null/],
  ])("a bad userRateLimit (%j) is a configuration error (78), nothing fetched", async (limit, message) => {
    host.writeConfig({ source: { type: "connect", host: fake.url }, userRateLimit: limit });
    const r = await host.run(attacker, []);
    expect(r.exitCode).toBe(78);
    expect(r.stderr).toMatch(message);
    expect(listTree(host.secretsDir(attacker))).toEqual([]);
  });

  describe("the tree node runs from must be root's", () => {
    let markers = "";
    beforeAll(() => {
      markers = join(host.dir, "markers");
      mkdirSync(markers, { mode: 0o1777 });
      chmodSync(markers, 0o1777);
    });

    /** A copy of the installed tree (package.json, helper/dist, node_modules) at `dir`. */
    const copyTree = (dir: string, owner: Account | undefined) => {
      mkdirSync(join(dir, "helper"), { recursive: true });
      copyFileSync(join(repoRoot, "package.json"), join(dir, "package.json"));
      cpSync(dirname(cliPath()), join(dir, "helper", "dist"), { recursive: true });
      cpSync(join(repoRoot, "node_modules"), join(dir, "node_modules"), { recursive: true, verbatimSymlinks: true });
      if (owner) execFileSync("chown", ["-R", `${owner.uid}:${owner.gid}`, dir]);
      return join(dir, "helper", "dist", "cli.js");
    };
    const install = (name: string, options: { cli?: string; node?: string }) => {
      const wrapper = buildWrapper({
        configDir: host.configDir,
        out: join(host.dir, "bin", name),
        stateDir: host.stateDir,
        node: nodePath(),
        ...options,
      });
      chownSync(wrapper, host.svc.uid, host.svc.gid);
      chmodSync(wrapper, 0o6755);
      return wrapper;
    };
    const doctor = (wrapper: string) =>
      execa(
        process.execPath,
        [cliPath(), "doctor", "--config-dir", host.configDir, "--wrapper", wrapper, "--service-user", host.svc.name],
        { reject: false },
      );

    it("a checkout owned by an ordinary user: their edited cli.js never runs as the service account (78, one line; doctor UNSAFE)", async () => {
      useFake();
      const cli = copyTree(join(host.dir, `home-${attacker.name}`, "checkout"), attacker);
      // The owner's edit: runs as whoever starts the CLI.
      const original = readFileSync(cli, "utf8");
      const [shebang, ...rest] = original.split("\n");
      writeFileSync(
        cli,
        [
          shebang,
          `import { writeFileSync as hsw } from "node:fs"; try { hsw(${JSON.stringify(markers)} + "/pwned-" + process.getuid(), ""); } catch {}`,
          ...rest,
        ].join("\n"),
      );
      const wrapper = install("user-tree-wrapper", { cli });
      const r = await host.runAs(victim, wrapper, [], { timeoutMs: 20_000 });
      expect(readdirSync(markers)).toEqual([]);
      expect(r.exitCode, r.stderr).toBe(78);
      expect(r.stderr.trim().split("\n")).toHaveLength(1);
      expect(r.stderr).toMatch(new RegExp(`unsafe .*${host.dir}/home-${attacker.name}.*owned by uid ${attacker.uid}`));
      expect(listTree(host.secretsDir(victim))).toEqual([]);
      const d = await doctor(wrapper);
      expect(d.exitCode).toBe(78);
      expect(d.stdout).toMatch(/UNSAFE {2}cli tree: .*owned by uid/);
    });

    it("a root-owned tree with one group-writable directory is refused too", async () => {
      useFake();
      const cli = copyTree(join(host.dir, "root-tree"), undefined);
      chmodSync(join(dirname(cli), "user"), 0o775);
      const wrapper = install("gw-tree-wrapper", { cli });
      const r = await host.runAs(victim, wrapper, [], { timeoutMs: 20_000 });
      expect(r.exitCode, r.stderr).toBe(78);
      expect(r.stderr.trim().split("\n")).toHaveLength(1);
      expect(r.stderr).toMatch(/unsafe .*root-tree\/helper\/dist\/user.*writable by group or others/);
      const d = await doctor(wrapper);
      expect(d.stdout).toMatch(/UNSAFE {2}cli tree: .*writable by group or others/);
      // Control: the same tree, fixed, runs.
      chmodSync(join(dirname(cli), "user"), 0o755);
      const ok = await host.runAs(victim, wrapper, [], { timeoutMs: 20_000 });
      expect(ok.exitCode, ok.stderr).toBe(0);
      const good = await doctor(wrapper);
      expect(good.stdout).toMatch(/ok {6}cli tree: /);
      expect(good.stdout).toMatch(/ok {6}node: /);
    });

    it("a node binary under a user's home (nvm, fnm) is refused (78, one line; doctor UNSAFE)", async () => {
      useFake();
      const nodeDir = join(host.dir, `home-${attacker.name}`, ".nvm", "bin");
      mkdirSync(nodeDir, { recursive: true });
      const node = join(nodeDir, "node");
      copyFileSync(process.execPath, node);
      execFileSync("chown", ["-R", `${attacker.uid}:${attacker.gid}`, join(host.dir, `home-${attacker.name}`)]);
      const wrapper = install("user-node-wrapper", { cli: cliPath(), node });
      const r = await host.runAs(victim, wrapper, [], { timeoutMs: 20_000 });
      expect(r.exitCode, r.stderr).toBe(78);
      expect(r.stderr.trim().split("\n")).toHaveLength(1);
      expect(r.stderr).toMatch(new RegExp(`unsafe ${host.dir}/home-${attacker.name}: owned by uid ${attacker.uid}`));
      const d = await doctor(wrapper);
      expect(d.stdout).toMatch(/UNSAFE {2}node: .*owned by uid/);
    });

    it.each([
      ["CLI", { cli: "/nonexistent/homelab-secrets/helper/dist/cli.js" }],
      ["node", { node: "/nonexistent/bin/node" }],
    ])("a missing %s is one line and exit 78, never a stack trace", async (_name, paths) => {
      const wrapper = install(`missing-${_name}-wrapper`, { cli: cliPath(), ...paths });
      const r = await host.runAs(victim, wrapper, [], { timeoutMs: 20_000 });
      expect(r.exitCode).toBe(78);
      expect(r.stderr.trim().split("\n")).toHaveLength(1);
      expect(r.stderr).toMatch(/homelab-secrets-user: .*\/nonexistent.*(No such file|missing)/);
    });
  });
});
