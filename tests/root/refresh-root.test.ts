// `homelab-secrets refresh` as a real process, as root: a fake Connect server (the real
// protocol) whose values change at runtime, files owned by a real service account, and a fake
// `systemctl` first on PATH that records its argv. Counts the backend's requests per run.
import { chmodSync, existsSync, mkdirSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { execa } from "execa";
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { startFakeConnect, type ConnectItem, type FakeConnect } from "../connect/fake-connect.mjs";
import { createAccount, hasCommand, rootSkipReason, type TestAccount } from "./root-env.js";

const cli = join(import.meta.dirname, "../../helper/dist/cli.js");
const skip = rootSkipReason();
const token = "refresh-root-token-7c2e91";

describe.skipIf(skip !== undefined)("refresh as root: fake Connect, a real service account, a recording systemctl", () => {
  let work: string;
  let svc: TestAccount;
  let server: FakeConnect | undefined;
  /** Current backend values by field label; the server reads them on every item request. */
  const current = { password: "pw-v1", username: "user-v1" };
  let out: string;
  let specFile: string;
  let bin: string;
  let argvLog: string;

  const vault = { vaults: { Lab: { items: { App: { fields: { password: "seed", username: "seed" } } } } } };
  const live = (item: ConnectItem) => {
    for (const f of item.fields) if (f.label === "password" || f.label === "username") f.value = current[f.label];
  };
  const serve = async () => {
    server = await startFakeConnect({ vault, token, mutateItem: live });
    writeFileSync(
      specFile,
      JSON.stringify({
        version: 1,
        name: "app",
        outputDir: out,
        owner: svc.name,
        group: svc.name,
        dirMode: "0750",
        source: { type: "connect", host: server.url, tokenFile: join(work, "token") },
        files: { password: { ref: "op://Lab/App/password", mode: "0400" } },
        envFiles: { "app.env": { mode: "0440", vars: { APP_USER: "op://Lab/App/username", APP_PASSWORD: "op://Lab/App/password" } } },
      }),
    );
  };
  const run = (command: string, args: string[] = [], path = `${bin}:${process.env["PATH"]}`) =>
    execa(process.execPath, [cli, command, "--spec", specFile, "--deadline", "3", ...args], {
      reject: false,
      env: { PATH: path, HOME: work },
      extendEnv: false,
      timeout: 30_000,
    });
  const recorded = () => {
    try {
      return readFileSync(argvLog, "utf8").split("\n").filter(Boolean);
    } catch {
      return [];
    }
  };
  const snapshot = () =>
    ["password", "app.env"].map((n) => {
      const s = statSync(join(out, n), { bigint: true });
      return {
        n,
        ino: s.ino,
        mtimeNs: s.mtimeNs,
        uid: Number(s.uid),
        gid: Number(s.gid),
        mode: Number(s.mode & 0o7777n),
        content: readFileSync(join(out, n), "utf8"),
      };
    });

  beforeAll(() => {
    svc = createAccount("hsrf");
    work = mkdtempSync(join(tmpdir(), "hs-refresh-root-"));
    writeFileSync(join(work, "token"), `${token}\n`, { mode: 0o600 });
    bin = join(work, "bin");
    mkdirSync(bin);
    argvLog = join(work, "systemctl.argv");
    // One line per call: each argument in brackets, so a stray space or empty argument shows.
    writeFileSync(
      join(bin, "systemctl"),
      `#!/bin/sh\nline=""\nfor a in "$@"; do line="$line[$a]"; done\necho "$line" >>"${argvLog}"\nexit "\${FAKE_SYSTEMCTL_EXIT:-0}"\n`,
    );
    chmodSync(join(bin, "systemctl"), 0o755);
    out = join(work, "run", "app-secrets");
    specFile = join(work, "app.json");
  });
  beforeEach(async () => {
    current.password = "pw-v1";
    current.username = "user-v1";
    rmSync(argvLog, { force: true });
    rmSync(join(work, "run"), { recursive: true, force: true });
    await serve();
  });
  afterEach(async () => {
    await server?.close();
    server = undefined;
  });
  afterAll(() => {
    rmSync(work, { recursive: true, force: true });
    svc?.remove();
  });

  it("unchanged: one backend batch (as many requests as a fetch), nothing written, systemctl never run", async () => {
    const fetched = await run("fetch");
    expect(fetched.exitCode, fetched.stderr).toBe(0);
    const perBatch = server!.requests.length;
    expect(perBatch).toBeGreaterThan(0);
    const before = snapshot();
    expect(before.map((f) => [f.uid, f.gid])).toEqual([
      [svc.uid, svc.gid],
      [svc.uid, svc.gid],
    ]);
    server!.clearRequests();
    const refreshed = await run("refresh", ["--restart", "app.service"]);
    expect(refreshed.exitCode, refreshed.stderr).toBe(0);
    expect(refreshed.stderr).toMatch(/app: unchanged \(2 file\(s\) from 2 reference\(s\) via connect\); nothing written/);
    expect(server!.requests.length, "one batch").toBe(perBatch);
    expect(snapshot()).toEqual(before);
    expect(recorded()).toEqual([]);
    console.log(`refresh of an unchanged service: ${server!.requests.length} Connect request(s), the same as a fetch (${perBatch})`);
  });

  it("a value rotated at the server: both files rewritten for the service account, one try-restart with unit names only", async () => {
    expect((await run("fetch")).exitCode).toBe(0);
    const before = snapshot();
    current.password = "pw-v2 rotated";
    server!.clearRequests();
    const refreshed = await run("refresh", ["--restart", "app.service"]);
    expect(refreshed.exitCode, refreshed.stderr).toBe(0);
    const after = snapshot();
    expect(after[0]).toMatchObject({ content: "pw-v2 rotated", uid: svc.uid, gid: svc.gid, mode: 0o400 });
    expect(after[1]).toMatchObject({ content: 'APP_USER="user-v1"\nAPP_PASSWORD="pw-v2 rotated"\n', mode: 0o440 });
    expect(after[0]!.ino).not.toBe(before[0]!.ino);
    expect(after[1]!.ino).not.toBe(before[1]!.ino);
    expect(recorded()).toEqual(["[try-restart][--job-mode=ignore-requirements][app.service]"]);
    expect(refreshed.stderr).toMatch(/app: changed: password \(content\), app\.env \(content\)/);
    for (const v of ["pw-v1", "pw-v2 rotated", "user-v1", token]) expect(refreshed.stderr).not.toContain(v);

    // Again, unchanged now: no second restart.
    const again = await run("refresh", ["--restart", "app.service"]);
    expect(again.exitCode, again.stderr).toBe(0);
    expect(snapshot()).toEqual(after);
    expect(recorded()).toHaveLength(1);
  });

  it("--reload: try-reload-or-restart", async () => {
    expect((await run("fetch")).exitCode).toBe(0);
    current.username = "user-v2";
    const refreshed = await run("refresh", ["--reload", "nginx.service"]);
    expect(refreshed.exitCode, refreshed.stderr).toBe(0);
    expect(recorded()).toEqual(["[try-reload-or-restart][--job-mode=ignore-requirements][nginx.service]"]);
  });

  it("the backend down: exit 75 within the deadline, files untouched, systemctl never run", async () => {
    expect((await run("fetch")).exitCode).toBe(0);
    const before = snapshot();
    current.password = "pw-v2";
    await server!.close();
    server = undefined;
    const t0 = Date.now();
    const refreshed = await run("refresh", ["--restart", "app.service"]);
    expect(refreshed.exitCode, refreshed.stderr).toBe(75);
    expect(Date.now() - t0).toBeLessThan(10_000);
    expect(snapshot()).toEqual(before);
    expect(recorded()).toEqual([]);
  });

  it("a rejected token: exit 77, files untouched, nothing restarted", async () => {
    expect((await run("fetch")).exitCode).toBe(0);
    const before = snapshot();
    writeFileSync(join(work, "token"), "not-the-token\n", { mode: 0o600 });
    try {
      const refreshed = await run("refresh", ["--restart", "app.service"]);
      expect(refreshed.exitCode, refreshed.stderr).toBe(77);
    } finally {
      writeFileSync(join(work, "token"), `${token}\n`, { mode: 0o600 });
    }
    expect(snapshot()).toEqual(before);
    expect(recorded()).toEqual([]);
  });

  it("the service not running (no outputDir): exit 0, nothing created, no request, nothing restarted", async () => {
    const refreshed = await run("refresh", ["--restart", "app.service"]);
    expect(refreshed.exitCode, refreshed.stderr).toBe(0);
    expect(refreshed.stderr).toMatch(/does not exist \(the service is not running\)/);
    expect(() => statSync(out)).toThrow();
    expect(server!.requests).toEqual([]);
    expect(recorded()).toEqual([]);
  });

  it("systemctl failing after the rewrite: exit 75 saying the files are written; systemctl absent from PATH: 78", async () => {
    expect((await run("fetch")).exitCode).toBe(0);
    current.password = "pw-v2";
    const failing = await execa(process.execPath, [cli, "refresh", "--spec", specFile, "--restart", "app.service"], {
      reject: false,
      env: { PATH: `${bin}:${process.env["PATH"]}`, HOME: work, FAKE_SYSTEMCTL_EXIT: "1" },
      extendEnv: false,
    });
    expect(failing.exitCode, failing.stderr).toBe(75);
    expect(failing.stderr).toMatch(
      /systemctl try-restart --job-mode=ignore-requirements app\.service failed \(exit 1\); the new files are written/,
    );
    current.password = "pw-v3";
    const absent = await run("refresh", ["--restart", "app.service"], join(work, "empty-path"));
    expect(absent.exitCode, absent.stderr).toBe(78);
    expect(absent.stderr).toMatch(/systemctl not found on PATH/);
    expect(readFileSync(join(out, "password"), "utf8")).toBe("pw-v3");
  });
});

// refresh --cache with the REAL systemd-creds: the host key a temporary file
// (SYSTEMD_CREDENTIAL_SECRET), the cache and marker directories temporary ones.
describe.skipIf(skip !== undefined || !hasCommand("systemd-creds"))("refresh --cache with the real systemd-creds", () => {
  let work: string;
  let server: FakeConnect | undefined;
  let port = 0;
  let n = 0;
  const current = { password: "pw-v1" };
  const vault = { vaults: { Lab: { items: { App: { fields: { password: "seed" } } } } } };
  const live = (item: ConnectItem) => {
    for (const f of item.fields) if (f.label === "password") f.value = current.password;
  };
  const up = async () => {
    server = await startFakeConnect({ vault, token, mutateItem: live, ...(port ? { port } : {}) });
    port = server.port;
  };
  const down = async () => {
    await server?.close();
    server = undefined;
  };

  beforeAll(async () => {
    work = mkdtempSync(join(tmpdir(), "hs-refresh-cache-root-"));
    await up();
  });
  afterEach(async () => {
    current.password = "pw-v1";
    await down();
    await up();
  });
  afterAll(async () => {
    await down();
    rmSync(work, { recursive: true, force: true });
  });

  /** A fresh case: spec, output, cache, markers, host key, token and a recording systemctl. */
  function setup() {
    const dir = join(work, `case${++n}`);
    mkdirSync(dir, { mode: 0o700 });
    const p = {
      spec: join(dir, "spec.json"),
      out: join(dir, "out"),
      cache: join(dir, "cache"),
      markers: join(dir, "markers"),
      key: join(dir, "credential.secret"),
      token: join(dir, "token"),
      bin: join(dir, "bin"),
      argv: join(dir, "systemctl.argv"),
    };
    writeFileSync(p.token, `${token}\n`, { mode: 0o600 });
    mkdirSync(p.bin);
    writeFileSync(join(p.bin, "systemctl"), `#!/bin/sh\necho "$*" >>"${p.argv}"\n`, { mode: 0o755 });
    writeFileSync(
      p.spec,
      JSON.stringify({
        version: 1,
        name: "app",
        outputDir: p.out,
        source: { type: "connect", host: `http://127.0.0.1:${port}`, tokenFile: p.token },
        files: { password: { ref: "op://Lab/App/password", mode: "0400" } },
      }),
    );
    const cacheFlags = ["--cache", "--cache-dir", p.cache, "--cache-marker-dir", p.markers];
    const cli_ = (command: string, args: string[]) =>
      execa(process.execPath, [cli, command, "--spec", p.spec, "--deadline", "2", ...cacheFlags, ...args], {
        reject: false,
        env: { PATH: `${p.bin}:${process.env["PATH"]}`, SYSTEMD_CREDENTIAL_SECRET: p.key },
        extendEnv: false,
        timeout: 30_000,
      });
    const markers = () => (existsSync(p.markers) ? readdirSync(p.markers) : []);
    const restarts = () => (existsSync(p.argv) ? readFileSync(p.argv, "utf8").split("\n").filter(Boolean) : []);
    const sealed = () => readFileSync(join(p.cache, "app.cred"));
    const password = () => readFileSync(join(p.out, "password"), "utf8");
    return {
      ...p,
      markerDir: p.markers,
      fetch: (a: string[] = []) => cli_("fetch", a),
      refresh: () => cli_("refresh", ["--restart", "app.service"]),
      markers,
      restarts,
      sealed,
      password,
    };
  }

  /** The service starts on cached values: a fresh fetch seals pw-v1, then a start with Connect down. */
  async function onCachedValues() {
    const c = setup();
    expect((await c.fetch()).exitCode).toBe(0);
    await down();
    const cached = await c.fetch();
    expect(cached.exitCode, cached.stderr).toBe(0);
    expect(cached.stderr).toMatch(/using cached values/);
    expect(c.markers()).toEqual(["app"]);
    await up();
    return c;
  }

  it("a rotated value while on cached values: files rewritten, marker gone, one restart, the new value sealed", async () => {
    const c = await onCachedValues();
    const before = c.sealed();
    current.password = "pw-v2 rotated";
    server!.clearRequests();
    const r = await c.refresh();
    expect(r.exitCode, r.stderr).toBe(0);
    expect(server!.requests.length, "it asked the backend").toBeGreaterThan(0);
    expect(c.password()).toBe("pw-v2 rotated");
    expect(c.markers()).toEqual([]);
    expect(c.restarts()).toEqual(["try-restart --job-mode=ignore-requirements app.service"]);
    expect(c.sealed().equals(before), "the sealed file was rewritten").toBe(false);
    expect(c.sealed().includes(Buffer.from("pw-v2"))).toBe(false);
    for (const v of ["pw-v1", "pw-v2", token]) expect(r.stderr).not.toContain(v);
    // What was sealed is the new value: a start with Connect down now stands in with pw-v2.
    await down();
    rmSync(c.out, { recursive: true, force: true });
    const start = await c.fetch();
    expect(start.exitCode, start.stderr).toBe(0);
    expect(c.password()).toBe("pw-v2 rotated");
  });

  it("unchanged while on cached values: nothing written, nothing restarted, but the marker goes and the cache is sealed anew", async () => {
    const c = await onCachedValues();
    const before = c.sealed();
    const file = statSync(join(c.out, "password"), { bigint: true });
    const r = await c.refresh();
    expect(r.exitCode, r.stderr).toBe(0);
    expect(r.stderr).toMatch(/app: unchanged/);
    expect(c.markers()).toEqual([]);
    expect(c.restarts()).toEqual([]);
    const now = statSync(join(c.out, "password"), { bigint: true });
    expect([now.ino, now.mtimeNs]).toEqual([file.ino, file.mtimeNs]);
    expect(c.sealed().equals(before), "sealed again (a new storedAt)").toBe(false);
  });

  it("a refresh within --cache-reuse of the last fresh fetch still asks the backend (a refresh never reuses)", async () => {
    const c = setup();
    expect((await c.fetch(["--cache-reuse", "600"])).exitCode).toBe(0);
    current.password = "pw-v2";
    server!.clearRequests();
    const r = await c.refresh();
    expect(r.exitCode, r.stderr).toBe(0);
    expect(server!.requests.length).toBeGreaterThan(0);
    expect(c.password()).toBe("pw-v2");
  });

  it("Connect still down: exit 75, no fallback to the cache, files, marker and sealed file untouched, nothing restarted", async () => {
    const c = await onCachedValues();
    const before = {
      sealed: c.sealed(),
      marker: readFileSync(join(c.markerDir, "app")),
      file: statSync(join(c.out, "password"), { bigint: true }),
    };
    await down();
    const r = await c.refresh();
    expect(r.exitCode, r.stderr).toBe(75);
    expect(r.stderr).not.toMatch(/using cached values/);
    expect(c.sealed().equals(before.sealed)).toBe(true);
    expect(readFileSync(join(c.markerDir, "app")).equals(before.marker)).toBe(true);
    const now = statSync(join(c.out, "password"), { bigint: true });
    expect([now.ino, now.mtimeNs]).toEqual([before.file.ino, before.file.mtimeNs]);
    expect(c.restarts()).toEqual([]);
  });
});
