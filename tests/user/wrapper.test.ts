/**
 * The per-user feature end to end as root: a real SUID+SGID wrapper, a service account,
 * two ordinary users, and the attacks that must fail.
 */
import { execFileSync } from "node:child_process";
import {
  chmodSync,
  chownSync,
  existsSync,
  lstatSync,
  mkdirSync,
  readdirSync,
  readFileSync,
  readlinkSync,
  rmSync,
  statSync,
  symlinkSync,
  writeFileSync,
} from "node:fs";
import { createServer, type Server, type Socket } from "node:net";
import { join } from "node:path";
import { execa } from "execa";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import {
  cliPath,
  createHost,
  describeAsRoot,
  listTree,
  modeOf,
  nodePath,
  processesOf,
  type Account,
  type Host,
  waitFor,
} from "./harness.js";

const vault = {
  vaults: {
    V: {
      items: {
        A: { fields: { one: "alpha-1", two: "alpha-2", three: "alpha-3" } },
        B: { fields: { one: "bravo-1" } },
      },
    },
  },
};

describeAsRoot("per-user secrets through the SUID wrapper", () => {
  let host: Host;
  let u0: Account;
  let u1: Account;
  let baseMapfile: string;

  beforeAll(async () => {
    host = await createHost({ users: 2, vault });
    [u0, u1] = host.users as [Account, Account];
    baseMapfile = [
      "# per-user test mapfile",
      `${u0.name} op://V/A/one one.txt`,
      `${u0.name}\top://V/A/two\tnested/two.txt\tweb`,
      `${u0.name} op://V/A/three three.txt db,web`,
      "",
      `${u1.name} op://V/B/one one.txt`,
    ].join("\n");
  });
  afterAll(async () => {
    await host?.destroy();
  });
  afterEach(() => {
    host.writeMapfile(baseMapfile);
    host.writeConfig({ source: { type: "file", path: host.vaultFile } });
    for (const user of host.users) rmSync(host.secretsDir(user), { recursive: true, force: true });
  });
  const reset = () => {
    host.writeMapfile(baseMapfile);
    for (const user of host.users) rmSync(host.secretsDir(user), { recursive: true, force: true });
  };

  it("gives each user exactly their entries, owned by them, mode 0600", async () => {
    reset();
    const started = performance.now();
    const r0 = await host.run(u0, []);
    const ms = performance.now() - started;
    expect(r0.exitCode, r0.stderr).toBe(0);
    const r1 = await host.run(u1, ["-v"]);
    expect(r1.exitCode, r1.stderr).toBe(0);
    console.info(`wrapper run (fetcher + writer, file source): ${Math.round(ms)} ms`);

    expect(listTree(host.secretsDir(u0))).toEqual(["nested/", "nested/two.txt", "one.txt", "three.txt"]);
    expect(listTree(host.secretsDir(u1))).toEqual(["one.txt"]);
    const expectFile = (user: Account, rel: string, value: string) => {
      const path = join(host.secretsDir(user), rel);
      const stats = lstatSync(path);
      expect(stats.isFile()).toBe(true);
      expect([stats.uid, stats.gid, stats.mode & 0o7777]).toEqual([user.uid, user.gid, 0o600]);
      expect(readFileSync(path, "utf8")).toBe(value);
    };
    expectFile(u0, "one.txt", "alpha-1");
    expectFile(u0, "nested/two.txt", "alpha-2");
    expectFile(u0, "three.txt", "alpha-3");
    expectFile(u1, "one.txt", "bravo-1");
    for (const d of [host.secretsDir(u0), join(host.secretsDir(u0), "nested")]) {
      const stats = statSync(d);
      expect([stats.uid, stats.mode & 0o7777]).toEqual([u0.uid, 0o700]);
    }
    // Values never reach the logs.
    expect(r1.stderr).not.toContain("bravo-1");
    expect(r1.stderr).toContain("(fetcher)");
    // SUID to a non-root account: setgroups() is not permitted, so the caller's groups stay
    // (documented; ptrace and /proc access are still refused, see the attack tests).
    expect(r1.stderr).toContain(`fetcher: running as uid ${host.svc.uid} gid ${host.svc.gid} groups [${u1.gid},${host.svc.gid}]`); // node's getgroups() appends the egid
    expect(r1.stderr).toContain("(writer)");
  });

  it("filters by tags and cleans up with the same filter", async () => {
    reset();
    let r = await host.run(u0, ["-tags", "web"]);
    expect(r.exitCode, r.stderr).toBe(0);
    expect(listTree(host.secretsDir(u0))).toEqual(["nested/", "nested/two.txt", "three.txt"]);
    r = await host.run(u0, ["--untagged"]);
    expect(r.exitCode, r.stderr).toBe(0);
    expect(listTree(host.secretsDir(u0))).toEqual(["nested/", "nested/two.txt", "one.txt", "three.txt"]);
    r = await host.run(u0, ["--cleanup", "--tags=db"]);
    expect(r.exitCode, r.stderr).toBe(0);
    expect(listTree(host.secretsDir(u0))).toEqual(["nested/", "nested/two.txt", "one.txt"]);
    r = await host.run(u0, ["-cleanup", "-untagged"]);
    expect(r.exitCode, r.stderr).toBe(0);
    expect(listTree(host.secretsDir(u0))).toEqual(["nested/", "nested/two.txt"]);
    // A tag that looks like a flag stays a tag: nothing matches, nothing is removed.
    r = await host.run(u0, ["--tags", "--cleanup"]);
    expect(r.exitCode, r.stderr).toBe(0);
    expect(listTree(host.secretsDir(u0))).toEqual(["nested/", "nested/two.txt"]);
    r = await host.run(u0, ["--cleanup"]);
    expect(r.exitCode, r.stderr).toBe(0);
    expect(listTree(host.secretsDir(u0))).toEqual(["nested/"]);
  });

  it("resolves only the caller's entries (another user's broken entry does not matter)", async () => {
    reset();
    host.writeMapfile(`${baseMapfile}\n${u1.name} op://V/B/missing missing.txt\n`);
    const r0 = await host.run(u0, []);
    expect(r0.exitCode, r0.stderr).toBe(0);
    const r1 = await host.run(u1, []);
    expect(r1.exitCode).toBe(69);
    expect(r1.stderr).toMatch(/op:\/\/V\/B\/missing/);
    // All or nothing: u1's good entry was not written either.
    expect(listTree(host.secretsDir(u1))).toEqual([]);
  });

  it("reports a malformed mapfile line with FILE:LINE, hiding other users' lines", async () => {
    reset();
    host.writeMapfile(`${baseMapfile}\n${u1.name} op://V/B/secret-name\n${u0.name} op://V/A/one\n`);
    const r = await host.run(u0, []);
    expect(r.exitCode).toBe(65);
    expect(r.stderr).toContain(`${host.configDir}/mapfile:7: malformed line (another user's entry; details hidden)`);
    expect(r.stderr).toContain(`${host.configDir}/mapfile:8: expected 3 or 4 fields`);
    expect(r.stderr).not.toContain("secret-name");
    expect(listTree(host.secretsDir(u0))).toEqual([]);
  });

  it("runs --version and --help as the caller, and refuses unknown flags", async () => {
    const version = await host.run(u0, ["--version"]);
    expect(version.exitCode, version.stderr).toBe(0);
    expect(version.stdout.trim()).toMatch(/^\d+\.\d+\.\d+/);
    const help = await host.run(u0, ["-help"]);
    expect(help.exitCode).toBe(0);
    expect(help.stdout).toContain("--map-file-path");
    const bad = await host.run(u0, ["--source", "file:/tmp/x"]);
    expect(bad.exitCode).toBe(64);
    expect(bad.stderr).toContain('unknown option "--source"');
    const positional = await host.run(u0, ["extra"]);
    expect(positional.exitCode).toBe(64);
  });

  it("also works installed SUID root with -DHS_SERVICE_USER (the fetcher still runs as the service account)", async () => {
    reset();
    const { buildWrapper } = await import("../../helper/scripts/build-wrapper.mjs");
    const rootWrapper: string = buildWrapper({
      configDir: host.configDir,
      out: join(host.dir, "bin", "root-wrapper"),
      cli: cliPath(),
      node: nodePath(),
      serviceUser: host.svc.name,
    });
    try {
      chownSync(rootWrapper, 0, 0);
      chmodSync(rootWrapper, 0o4755);
      const r = await host.runAs(u0, rootWrapper, ["-v"]);
      expect(r.exitCode, String(r.stderr)).toBe(0);
      expect(listTree(host.secretsDir(u0))).toEqual(["nested/", "nested/two.txt", "one.txt", "three.txt"]);
      expect(statSync(join(host.secretsDir(u0), "one.txt")).uid).toBe(u0.uid);
      // With root's rights available the fetcher sheds the caller's supplementary groups too.
      expect(String(r.stderr)).toContain(`fetcher: running as uid ${host.svc.uid} gid ${host.svc.gid} groups [${host.svc.gid}]`); // only the egid, which node's getgroups() appends
      // Built without a service account, a SUID-root install refuses to run.
      const bare: string = buildWrapper({
        configDir: host.configDir,
        out: join(host.dir, "bin", "bare-root-wrapper"),
        cli: cliPath(),
        node: nodePath(),
      });
      chownSync(bare, 0, 0);
      chmodSync(bare, 0o4755);
      const refused = await host.runAs(u0, bare, []);
      expect(refused.exitCode).toBe(78);
      expect(String(refused.stderr)).toMatch(/SUID root but built without -DHS_SERVICE_USER/);
      rmSync(bare);
    } finally {
      rmSync(rootWrapper, { force: true });
    }
  });

  describe("attacks that must fail", () => {
    it.each([
      ["--map-file-path FILE", (own: string) => ({ args: ["--map-file-path", own], env: {} })],
      ["-map-file-path=FILE", (own: string) => ({ args: [`-map-file-path=${own}`], env: {} })],
      ["OP_MAP_FILE_PATH", (own: string) => ({ args: [], env: { OP_MAP_FILE_PATH: own } })],
      ["OP_API_KEY_PATH", () => ({ args: [], env: { OP_API_KEY_PATH: "/tmp/whatever" } })],
      ["--api-key-path", () => ({ args: ["--api-key-path", "/tmp/whatever"], env: {} })],
    ])("a user pointing %s at their own mapfile is refused (77)", async (_name, attack) => {
      reset();
      // The attacker's mapfile maps their name to the other user's item.
      const own = join(host.dir, `evil-${u0.name}.map`);
      writeFileSync(own, `${u0.name} op://V/B/one stolen.txt\n`);
      chownSync(own, u0.uid, u0.gid);
      const { args, env } = attack(own);
      const r = await host.run(u0, args, { env });
      expect(r.exitCode).toBe(77);
      expect(r.stderr).toMatch(/honoured only for root/);
      expect(listTree(host.secretsDir(u0))).toEqual([]);
      rmSync(own);
    });

    it("code injected through NODE_OPTIONS or LD_PRELOAD never runs", async () => {
      reset();
      const markers = join(host.dir, "markers");
      mkdirSync(markers, { mode: 0o1777 });
      chmodSync(markers, 0o1777);
      const inject = join(host.dir, "inject.cjs");
      writeFileSync(
        inject,
        `require("fs").writeFileSync(${JSON.stringify(markers)} + "/node-options-" + process.getuid() + "-" + process.pid, "");\n`,
      );
      chmodSync(inject, 0o644);
      const so = join(host.dir, "inject.so");
      const c = join(host.dir, "inject.c");
      writeFileSync(
        c,
        `#include <stdio.h>\n#include <unistd.h>\n__attribute__((constructor)) static void hit(void) { char p[512]; snprintf(p, sizeof p, "${markers}/preload-%d-%d", (int)getuid(), (int)getpid()); FILE *f = fopen(p, "w"); if (f) fclose(f); }\n`,
      );
      execFileSync("cc", ["-shared", "-fPIC", "-o", so, c]);
      chmodSync(so, 0o755);
      const env = { NODE_OPTIONS: `--require ${inject}`, LD_PRELOAD: so, NODE_PATH: markers, NODE_DEBUG: "fs" };

      // Control: the same environment does inject into a node the user starts.
      const control = await host.runAs(u0, process.execPath, ["-e", "0"], { env: { PATH: "/usr/bin:/bin", ...env } });
      expect(control.exitCode).toBe(0);
      const controlMarkers = readdirSync(markers);
      expect(controlMarkers.some((m) => m.startsWith("node-options-"))).toBe(true);
      expect(controlMarkers.some((m) => m.startsWith("preload-"))).toBe(true);
      for (const m of controlMarkers) rmSync(join(markers, m));

      const r = await host.run(u0, [], { env });
      expect(r.exitCode, r.stderr).toBe(0);
      expect(readdirSync(markers)).toEqual([]);
      expect(readFileSync(join(host.secretsDir(u0), "one.txt"), "utf8")).toBe("alpha-1");
    });

    describe("a caller cannot reach into the running fetcher", () => {
      let server: Server;
      const sockets = new Set<Socket>();
      let port = 0;
      let probe = "";
      beforeAll(async () => {
        // Accepts and never answers: the fetch stays in flight while we attack.
        server = createServer((socket) => {
          sockets.add(socket);
          socket.on("close", () => sockets.delete(socket));
        });
        await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
        port = (server.address() as { port: number }).port;
        probe = join(host.dir, "bin", "probe");
        execFileSync("cc", ["-O2", "-o", probe, join(import.meta.dirname, "probe.c")]);
        chmodSync(probe, 0o755);
      });
      afterAll(async () => {
        for (const socket of sockets) socket.destroy();
        await new Promise((resolve) => server?.close(resolve));
      });

      it("environ, mem, maps, fd/, signals, process_vm_readv and ptrace are refused; nothing user-readable holds the token", async () => {
        reset();
        host.writeConfig({ source: { type: "connect", host: `http://127.0.0.1:${port}` } });
        const run = host.run(u0, ["--deadline", "30"]);
        const isFetcher = (pid: number) => {
          const uids = /^Uid:\s+(.*)$/m.exec(readText(`/proc/${pid}/status`))?.[1]?.split("\t");
          return uids?.length === 4 && uids.every((u) => Number(u) === host.svc.uid) && cmdline(pid).includes(cliPath());
        };
        const fetcher = await waitFor(() => processesOf(new Set([host.svc.uid])).find(isFetcher), 15_000);
        expect(fetcher, "fetcher process").toBeDefined();
        // Wait until the fetch is in flight (connected to the server that never answers).
        expect(await waitFor(() => (sockets.size > 0 ? true : undefined), 15_000)).toBe(true);
        const writer = Number(/^PPid:\s+(\d+)/m.exec(readFileSync(`/proc/${fetcher}/status`, "utf8"))![1]);

        // The fetcher is the service account in every uid and gid, without capabilities.
        const status = readFileSync(`/proc/${fetcher}/status`, "utf8");
        const svcIds = `${host.svc.uid}\t${host.svc.uid}\t${host.svc.uid}\t${host.svc.uid}`;
        expect(/^Uid:\s+(.*)$/m.exec(status)![1]).toBe(svcIds);
        expect(/^Gid:\s+(.*)$/m.exec(status)![1]).toBe(`${host.svc.gid}\t${host.svc.gid}\t${host.svc.gid}\t${host.svc.gid}`);
        expect(/^CapEff:\s+(.*)$/m.exec(status)![1]).toBe("0000000000000000");
        expect(/^CapPrm:\s+(.*)$/m.exec(status)![1]).toBe("0000000000000000");
        // Its environment is the wrapper's fixed one: none of the caller's variables.
        const env = readFileSync(`/proc/${fetcher}/environ`, "utf8")
          .split("\0")
          .filter(Boolean)
          .map((kv) => kv.split("=")[0]);
        expect(env.sort()).toEqual(
          [
            "HS_CALLER_GID",
            "HS_CALLER_UID",
            "HS_CALLER_USER",
            "HS_CONFIG_FD",
            "HS_FETCHER_LIMIT_S",
            "HS_MAPFILE_FD",
            "HS_MAPFILE_PATH",
            "HS_OUT_FD",
            "HS_ROLE",
            "HS_STATE_DIR",
            "HS_TOKEN_FD",
            "HS_WRAPPER",
            "HS_WRITER_PID",
          ].sort(),
        );
        // The fetcher read the token from its fd 4 and closed it; the writer never had it.
        expect(fdTargets(fetcher!)).not.toContain(`${host.configDir}/token`);
        expect(fdTargets(writer).filter((t) => t.startsWith(host.configDir))).toEqual([]);

        const attack = await host.runAs(u0, probe, [String(fetcher)]);
        const result = parseProbe(attack.stdout);
        console.info(`probe of the fetcher as the caller: ${JSON.stringify(result)}`);
        expect(result["environ"]).toMatch(/^err:E(ACCES|PERM)/);
        expect(result["mem"]).toMatch(/^err:E(ACCES|PERM)/);
        expect(result["maps"]).toMatch(/^err:E(ACCES|PERM)/);
        expect(result["fd"]).toMatch(/^err:E(ACCES|PERM)/);
        expect(result["kill"]).toBe("err:EPERM");
        expect(result["vmread"]).toBe("err:EPERM");
        expect(result["ptrace"]).toBe("err:EPERM");
        expect(result["cmdline"]).toMatch(/^ok:/); // world-readable by design: so it carries no secret
        expect(attack.stdout).not.toContain(host.token);

        // Control: the same probe reaches the caller's own writer process.
        const control = parseProbe((await host.runAs(u0, probe, [String(writer), "noptrace"])).stdout);
        expect(control["environ"]).toMatch(/^ok:/);
        expect(control["kill"]).toBe("ok");
        expect(`${control["environ"]} ${control["cmdline"]}`).not.toContain(host.token);
        expect(control["environ"]).not.toMatch(/HS_TOKEN_FD/);

        const stopped = performance.now();
        process.kill(writer, "SIGTERM"); // the fetcher notices its parent is gone and stops
        const r = await run; // resolves once the fetcher, too, has closed the caller's stderr
        console.info(`stopping the writer ended the run in ${Math.round(performance.now() - stopped)} ms`);
        expect(performance.now() - stopped).toBeLessThan(5000);
        expect(r.exitCode).not.toBe(0);
        await waitFor(() => (existsSync(`/proc/${fetcher}`) ? undefined : true), 5000);
        expect(existsSync(`/proc/${fetcher}`)).toBe(false);
        expect(listTree(host.secretsDir(u0))).toEqual([]);
      });
    });

    it("a symlink planted at the output path is replaced, not followed", async () => {
      reset();
      const secrets = host.secretsDir(u0);
      mkdirSync(secrets, { mode: 0o700 });
      chownSync(secrets, u0.uid, u0.gid);
      const victim = join(host.dir, `victim-${u0.name}`);
      writeFileSync(victim, "original");
      chownSync(victim, u0.uid, u0.gid);
      symlinkSync(victim, join(secrets, "one.txt"));
      symlinkSync(`${host.configDir}/token`, join(secrets, "three.txt"));
      const tokenBefore = readFileSync(`${host.configDir}/token`, "utf8");
      const r = await host.run(u0, []);
      expect(r.exitCode, r.stderr).toBe(0);
      expect(readFileSync(victim, "utf8")).toBe("original");
      expect(readFileSync(`${host.configDir}/token`, "utf8")).toBe(tokenBefore);
      expect(lstatSync(join(secrets, "one.txt")).isFile()).toBe(true);
      expect(readFileSync(join(secrets, "one.txt"), "utf8")).toBe("alpha-1");
      expect(lstatSync(join(secrets, "three.txt")).isFile()).toBe(true);
    });

    it("a symlinked directory inside secrets/ is refused and nothing is written", async () => {
      reset();
      const secrets = host.secretsDir(u0);
      mkdirSync(secrets, { mode: 0o700 });
      chownSync(secrets, u0.uid, u0.gid);
      const elsewhere = join(host.dir, `elsewhere-${u0.name}`);
      mkdirSync(elsewhere);
      chownSync(elsewhere, u0.uid, u0.gid);
      symlinkSync(elsewhere, join(secrets, "nested"));
      chownLink(join(secrets, "nested"), u0);
      const r = await host.run(u0, []);
      expect(r.exitCode).toBe(73);
      expect(r.stderr).toMatch(/symlink/);
      expect(readdirSync(elsewhere)).toEqual([]);
      expect(listTree(secrets)).toEqual(["nested"]); // one.txt and three.txt not written either
    });

    it("a symlinked secrets/ directory is refused", async () => {
      reset();
      const elsewhere = join(host.dir, `elsewhere2-${u0.name}`);
      mkdirSync(elsewhere);
      chownSync(elsewhere, u0.uid, u0.gid);
      symlinkSync(elsewhere, host.secretsDir(u0));
      chownLink(host.secretsDir(u0), u0);
      const r = await host.run(u0, []);
      expect(r.exitCode).toBe(73);
      expect(readdirSync(elsewhere)).toEqual([]);
      rmSync(host.secretsDir(u0));
    });

    it.each([["../escape.txt"], ["nested/../../escape.txt"], [`/run/user/UID/secrets/../escape.txt`]])(
      "`..` in a path (%s) is refused",
      async (path) => {
        reset();
        host.writeMapfile(`${baseMapfile}\n${u0.name} op://V/A/one ${path.replace("UID", String(u0.uid))}\n`);
        const r = await host.run(u0, []);
        expect(r.exitCode).toBe(65);
        expect(r.stderr).toContain(`${host.configDir}/mapfile:7: path`);
        expect(r.stderr).toContain('contains ".."');
        expect(existsSync(`/run/user/${u0.uid}/escape.txt`)).toBe(false);
        expect(listTree(host.secretsDir(u0))).toEqual([]);
      },
    );

    it.each<[string, { mode?: number; owner?: number }]>([
      ["group-writable (0660)", { mode: 0o660 }],
      ["world-writable (0646)", { mode: 0o646 }],
      ["owned by the service account", { owner: -1 }],
      ["owned by a user", { owner: -2 }],
    ])("a mapfile that is %s is refused for root and users alike (78)", async (_name, spec) => {
      reset();
      const owner = spec.owner === -1 ? host.svc.uid : spec.owner === -2 ? u0.uid : 0;
      host.writeMapfile(`${baseMapfile}\nroot op://V/A/one ${host.dir}/root-out/one.txt\n`, { owner, mode: spec.mode ?? 0o640 });
      const asRoot = await execa(host.wrapper, [], { reject: false, env: { PATH: "/usr/bin:/bin" }, extendEnv: false });
      expect(asRoot.exitCode).toBe(78);
      expect(asRoot.stderr).toMatch(/unsafe .*mapfile/);
      const asUser = await host.run(u0, []);
      expect(asUser.exitCode).toBe(78);
      expect(existsSync(join(host.dir, "root-out"))).toBe(false);
      expect(listTree(host.secretsDir(u0))).toEqual([]);
    });

    it("root may override paths, but only with a root-owned, not group/other-writable mapfile", async () => {
      reset();
      const rootMap = join(host.dir, "root.map");
      const out = join(host.dir, "root-out");
      mkdirSync(out, { mode: 0o700 });
      writeFileSync(rootMap, `root op://V/A/one ${out}/one.txt\n`, { mode: 0o600 });
      // Through the wrapper (the file is root's own 0600: opened with root's rights).
      let r = await execa(host.wrapper, ["--map-file-path", rootMap], { reject: false, env: { PATH: "/usr/bin:/bin" }, extendEnv: false });
      expect(r.exitCode, r.stderr).toBe(0);
      expect(readFileSync(join(out, "one.txt"), "utf8")).toBe("alpha-1");
      expect(modeOf(join(out, "one.txt"))).toBe(0o600);
      rmSync(join(out, "one.txt"));
      r = await execa(host.wrapper, [], { reject: false, env: { PATH: "/usr/bin:/bin", OP_MAP_FILE_PATH: rootMap }, extendEnv: false });
      expect(r.exitCode, r.stderr).toBe(0);
      rmSync(join(out, "one.txt"));

      chmodSync(rootMap, 0o620);
      r = await execa(host.wrapper, ["--map-file-path", rootMap], { reject: false, env: { PATH: "/usr/bin:/bin" }, extendEnv: false });
      expect(r.exitCode).toBe(78);
      // The same rule for root running the CLI directly.
      r = await execa(process.execPath, [cliPath(), "user", "--map-file-path", rootMap, "--config-dir", host.configDir], { reject: false });
      expect(r.exitCode).toBe(78);
      expect(r.stderr).toMatch(/root may use only a root-owned file/);
      chmodSync(rootMap, 0o600);
      chownSync(rootMap, u0.uid, u0.gid);
      r = await execa(process.execPath, [cliPath(), "user", "--map-file-path", rootMap, "--config-dir", host.configDir], { reject: false });
      expect(r.exitCode).toBe(78);
      expect(existsSync(join(out, "one.txt"))).toBe(false);
    });

    it("an unprivileged user running the CLI directly may use their own mapfile, token and source", async () => {
      reset();
      const home = join(host.dir, `home-${u0.name}`);
      mkdirSync(join(home, "conf"), { recursive: true });
      writeFileSync(join(home, "vault.json"), JSON.stringify({ vaults: { Mine: { items: { I: { fields: { f: "my-own" } } } } } }));
      writeFileSync(join(home, "conf", "config.json"), JSON.stringify({ source: { type: "file", path: join(home, "vault.json") } }));
      writeFileSync(join(home, "map"), `${u0.name} op://Mine/I/f mine.txt\n`);
      execFileSync("chown", ["-R", `${u0.uid}:${u0.gid}`, home]);
      const r = await host.runAs(u0, process.execPath, [
        cliPath(),
        "user",
        "-map-file-path",
        join(home, "map"),
        "--config-dir",
        join(home, "conf"),
      ]);
      expect(r.exitCode, r.stderr).toBe(0);
      expect(readFileSync(join(host.secretsDir(u0), "mine.txt"), "utf8")).toBe("my-own");
      expect(statSync(join(host.secretsDir(u0), "mine.txt")).uid).toBe(u0.uid);
    });
  });
});

function cmdline(pid: number): string {
  return readText(`/proc/${pid}/cmdline`);
}

function fdTargets(pid: number): string[] {
  return readdirSync(`/proc/${pid}/fd`).map((fd) => {
    try {
      return readlinkSync(`/proc/${pid}/fd/${fd}`);
    } catch {
      return "";
    }
  });
}

function readText(path: string): string {
  try {
    return readFileSync(path, "utf8");
  } catch {
    return "";
  }
}

function parseProbe(stdout: string): Record<string, string> {
  return Object.fromEntries(
    stdout
      .split("\n")
      .filter((l) => l.includes("="))
      .map((l) => [l.slice(0, l.indexOf("=")), l.slice(l.indexOf("=") + 1)]),
  );
}

function chownLink(path: string, user: Account): void {
  execFileSync("chown", ["-h", `${user.uid}:${user.gid}`, path]);
}
