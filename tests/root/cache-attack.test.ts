// fetch --cache attacked as root-run code: a hostile backend, the service's own account
// owning its output directory, and planted or malformed cache and marker files. The real
// systemd-creds of this host seals with a temporary host key (SYSTEMD_CREDENTIAL_SECRET); the
// host's /var/lib/systemd and /var/lib/homelab-secrets are never touched.
import { execFileSync } from "node:child_process";
import {
  chmodSync,
  chownSync,
  existsSync,
  lstatSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  symlinkSync,
  utimesSync,
  writeFileSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { execa } from "execa";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { cacheKey, credentialName } from "../../helper/src/cache/key.js";
import { parseReference } from "../../helper/src/reference.js";
import { startFakeConnect, type FakeConnect, type FileVault } from "../connect/fake-connect.mjs";
import { createAccount, hasCommand, rootSkipReason, type TestAccount } from "./root-env.js";

const cli = join(import.meta.dirname, "../../helper/dist/cli.js");
const skip = rootSkipReason(["systemd-creds", "mkfifo"]);
const token = "cache-attack-token-3c9a";
const v1 = { password: "first-password-v1-91c2e7", key: "first-api-key-v1-0d3f" };
const refs = ["op://Lab/App/password", "op://Lab/App/API/key"];
const vault = (v: { password: string; key: string } = v1): FileVault => ({
  vaults: { Lab: { items: { App: { fields: { password: v.password }, sections: { API: { key: v.key } } } } } },
});

describe.skipIf(skip !== undefined || !hasCommand("systemd-creds"))("fetch --cache under attack", () => {
  let work: string;
  let server: FakeConnect | undefined;
  let port = 0;
  let n = 0;
  let account: TestAccount;

  beforeAll(async () => {
    work = mkdtempSync(join(tmpdir(), "hs-cache-attack-"));
    chmodSync(work, 0o755);
    server = await startFakeConnect({ vault: vault(), token });
    port = server.port;
    account = createAccount("hsca");
  });
  afterEach(async () => {
    await server?.close();
    server = await startFakeConnect({ vault: vault(), token, port });
  });
  afterAll(async () => {
    await server?.close();
    account?.remove();
    rmSync(work, { recursive: true, force: true });
  });

  const restart = async (v: { password: string; key: string }) => {
    await server?.close();
    server = await startFakeConnect({ vault: vault(v), token, port });
  };
  const stopServer = async () => {
    await server!.close();
    server = undefined;
  };

  function setup(options: { name?: string; owner?: string } = {}) {
    const name = options.name ?? "app";
    const dir = join(work, `case${++n}`);
    mkdirSync(dir, { mode: 0o755 });
    chmodSync(dir, 0o755);
    const paths = {
      dir,
      spec: join(dir, "spec.json"),
      out: join(dir, "out"),
      cache: join(dir, "cache"),
      markers: join(dir, "markers"),
      key: join(dir, "credential.secret"),
      token: join(dir, "token"),
    };
    writeFileSync(paths.token, `${token}\n`, { mode: 0o600 });
    writeFileSync(
      paths.spec,
      JSON.stringify({
        version: 1,
        name,
        outputDir: paths.out,
        ...(options.owner ? { owner: options.owner, group: options.owner, dirMode: "0750" } : {}),
        source: { type: "connect", host: `http://127.0.0.1:${port}` },
        files: { password: { ref: refs[0], mode: "0400" } },
        envFiles: { "app.env": { vars: { API_KEY: refs[1] } } },
      }),
    );
    const fetch = (flags: string[] = [], env: Record<string, string> = {}) =>
      execa(
        process.execPath,
        [
          cli,
          "fetch",
          "--spec",
          paths.spec,
          "--token-file",
          paths.token,
          "--deadline",
          "2",
          "--cache",
          "--cache-dir",
          paths.cache,
          "--cache-marker-dir",
          paths.markers,
          ...flags,
        ],
        { reject: false, env: { SYSTEMD_CREDENTIAL_SECRET: paths.key, ...env } },
      );
    const password = () => readFileSync(join(paths.out, "password"), "utf8");
    return { ...paths, name, fetch, password };
  }

  /** Seal an entry by hand, as the helper would, with any content. */
  function seal(c: ReturnType<typeof setup>, entry: unknown) {
    execFileSync(
      "systemd-creds",
      ["encrypt", "--with-key=auto", `--name=${credentialName(c.name, specKey())}`, "-", join(c.cache, `${c.name}.cred`)],
      { input: JSON.stringify(entry), env: { ...process.env, SYSTEMD_CREDENTIAL_SECRET: c.key }, stdio: ["pipe", "ignore", "ignore"] },
    );
  }
  const specKey = () =>
    cacheKey(
      { type: "connect", host: `http://127.0.0.1:${port}` },
      refs.map((r) => parseReference(r)),
    );

  it("a fresh fetch whose values cannot be sealed (a > 1 MiB value) drops the older entry: an outage does not roll the service back to superseded values", async () => {
    const c = setup();
    expect((await c.fetch()).exitCode).toBe(0);
    expect(readdirSync(c.cache)).toEqual(["app.cred"]);

    // The backend rotates the password to a value systemd-creds cannot seal (its limit is 1 MiB).
    const v2 = { password: `rotated-v2-${"x".repeat(1100 * 1024)}`, key: v1.key };
    await restart(v2);
    const rotated = await c.fetch();
    expect(rotated.exitCode, rotated.stderr).toBe(0);
    expect(rotated.stderr).toMatch(/warn: app: fetched fresh, but could not update the cache/);
    expect(c.password()).toBe(v2.password);

    await stopServer();
    const outage = await c.fetch();
    expect(outage.stderr).not.toMatch(/using cached values/);
    expect(outage.exitCode, outage.stderr).toBe(75);
    expect(c.password(), "the service keeps the values it last fetched, not the superseded ones").toBe(v2.password);
    expect(readdirSync(c.cache)).toEqual([]);
  });

  it("a decrypting entry whose storedAt is no representable time is refused with the 75, not an internal error (70)", async () => {
    for (const storedAt of [1e300, 8.65e15]) {
      const c = setup();
      expect((await c.fetch()).exitCode).toBe(0);
      seal(c, { version: 1, specKey: specKey(), storedAt, values: { [refs[0]!]: "forged-pw", [refs[1]!]: "forged-key" } });
      const saved = server;
      server = undefined;
      await saved!.close();
      const r = await c.fetch();
      expect(r.stderr).not.toMatch(/internal error/);
      expect(r.exitCode, `${storedAt}: ${r.stderr}`).toBe(75);
      expect(r.stderr).toMatch(/warn: app: cached values not used: \S+app\.cred: no storedAt/);
      expect(c.password()).toBe(v1.password);
      await restart(v1);
    }
  });

  it("the temp file a killed systemd-creds leaves (.#<file>XXXXXX) is removed by the next store; another spec's temps are not", async () => {
    const c = setup();
    mkdirSync(c.cache, { mode: 0o700 });
    // systemd-creds writes its output through a temp file ".#" + the output's name + random
    // characters, then renames it (strace of systemd-creds encrypt); SIGKILL in between leaves it.
    const ours = [".#app.cred.0123456789ab.hs-tmpXgbsy1", ".#app.cred.0123456789ab.hs-tmp0f1e2d3c4b5a6978", "app.cred.a1b2c3d4e5f6.hs-tmp"];
    const others = ["app.cred.x.cred.a1b2c3d4e5f6.hs-tmp", ".#app.cred.x.cred.a1b2c3d4e5f6.hs-tmpQwErTy", "app2.cred"];
    for (const f of [...ours, ...others]) writeFileSync(join(c.cache, f), "ciphertext\n", { mode: 0o600 });
    const r = await c.fetch();
    expect(r.exitCode, r.stderr).toBe(0);
    expect(readdirSync(c.cache).sort()).toEqual(["app.cred", ...others].sort());
  });

  it("doctor survives a marker with impossible times and prints no control character from its reason", async () => {
    const c = setup();
    mkdirSync(c.markers, { mode: 0o700 });
    writeFileSync(join(c.markers, "app"), `${JSON.stringify({ since: 1e300, storedAt: 0, reason: "x" })}\n`);
    writeFileSync(
      join(c.markers, "web"),
      `${JSON.stringify({ since: Date.now(), storedAt: Date.now() - 1000, reason: "HTTP 503 \u001b]0;owned\u0007\u001b[2J\u009b31m" })}\n`,
    );
    const doctor = await execa(process.execPath, [cli, "doctor", "--config-dir", c.dir, "--cache-marker-dir", c.markers], {
      reject: false,
    });
    expect(doctor.stderr).not.toMatch(/internal error/);
    expect(doctor.stdout).toMatch(/cached values: app runs on cached values \(its marker in \S+ is unreadable\)/);
    expect(doctor.stdout).toMatch(/cached values: web runs on values fetched 1 s ago, since \S+Z: HTTP 503 /);
    // eslint-disable-next-line no-control-regex -- no C0, DEL or C1 control character may reach the terminal
    expect(doctor.stdout).not.toMatch(/[\u0000-\u0009\u000b-\u001f\u007f-\u009f]/);
  });

  it("systemd-creds never gets a value in its argv or environment (a PATH wrapper records both)", async () => {
    const c = setup();
    const bin = join(c.dir, "bin");
    mkdirSync(bin);
    const log = join(c.dir, "creds.log");
    const real = execFileSync("sh", ["-c", "command -v systemd-creds"], { encoding: "utf8" }).trim();
    writeFileSync(
      join(bin, "systemd-creds"),
      `#!/bin/sh\n{ printf '%s\\0' "$@"; cat /proc/$$/cmdline; env; } >> '${log}'\nexec '${real}' "$@"\n`,
      { mode: 0o755 },
    );
    const env = { PATH: `${bin}:${process.env["PATH"] ?? "/usr/bin:/bin"}` };
    expect((await c.fetch([], env)).exitCode).toBe(0);
    await stopServer();
    const fallback = await c.fetch([], env);
    expect(fallback.exitCode, fallback.stderr).toBe(0);
    const recorded = readFileSync(log, "utf8");
    expect(recorded).toMatch(/encrypt\0--with-key=auto\0--name=homelab-secrets\.app\.[0-9a-f]{16}\0-\0/);
    expect(recorded).toMatch(/decrypt\0--name=homelab-secrets\.app\.[0-9a-f]{16}\0\S+app\.cred\0-\0/);
    for (const v of [v1.password, v1.key]) expect(recorded).not.toContain(v);
    expect(c.password()).toBe(v1.password);
  });

  it("a start that reads the cache for --cache-reuse and then falls back decrypts it once (a hung TPM costs one timeout, not two past TimeoutStartSec)", async () => {
    const c = setup();
    const bin = join(c.dir, "bin");
    mkdirSync(bin);
    const log = join(c.dir, "creds.log");
    const real = execFileSync("sh", ["-c", "command -v systemd-creds"], { encoding: "utf8" }).trim();
    writeFileSync(join(bin, "systemd-creds"), `#!/bin/sh\necho "$1" >> '${log}'\nexec '${real}' "$@"\n`, { mode: 0o755 });
    const env = { PATH: `${bin}:${process.env["PATH"] ?? "/usr/bin:/bin"}` };
    expect((await c.fetch([], env)).exitCode).toBe(0);
    // Written just now (inside the window), holding values fetched 2 min ago (outside it).
    seal(c, { version: 1, specKey: specKey(), storedAt: Date.now() - 120_000, values: { [refs[0]!]: v1.password, [refs[1]!]: v1.key } });
    writeFileSync(log, "");
    await stopServer();
    const r = await c.fetch(["--cache-reuse", "60"], env);
    expect(r.exitCode, r.stderr).toBe(0);
    expect(r.stderr).toMatch(/using cached values from 2 min( \d+ s)? ago \(the backend failed/);
    expect(readFileSync(log, "utf8")).toBe("decrypt\n");
  });

  it("a FIFO planted as the cache file is refused at once (no hang); the 75 stands", async () => {
    const c = setup();
    mkdirSync(c.cache, { mode: 0o700 });
    execFileSync("mkfifo", ["-m", "0600", join(c.cache, "app.cred")]);
    expect((await c.fetch()).exitCode).toBe(0); // fresh: the rename replaces the FIFO
    expect(lstatSync(join(c.cache, "app.cred")).isFile()).toBe(true);
    rmSync(join(c.cache, "app.cred"));
    execFileSync("mkfifo", ["-m", "0600", join(c.cache, "app.cred")]);
    await stopServer();
    const r = await c.fetch();
    expect(r.exitCode, r.stderr).toBe(75);
    expect(r.stderr).toMatch(/cached values not used: \S+app\.cred is not a regular file/);
  });

  it("a cache directory that is a symlink, or pre-created by another account, is neither written nor read", async () => {
    const linked = setup();
    const real = join(linked.dir, "real-cache");
    mkdirSync(real, { mode: 0o700 });
    symlinkSync(real, linked.cache);
    const r1 = await linked.fetch();
    expect(r1.exitCode, r1.stderr).toBe(0);
    expect(r1.stderr).toMatch(/could not update the cache: \S+cache is not a directory/);
    expect(readdirSync(real)).toEqual([]);

    const foreign = setup();
    expect((await foreign.fetch()).exitCode).toBe(0); // a real entry first
    chownSync(foreign.cache, account.uid, account.gid); // then the directory is someone else's
    await stopServer();
    const r2 = await foreign.fetch();
    expect(r2.exitCode, r2.stderr).toBe(75);
    expect(r2.stderr).toMatch(new RegExp(`cached values not used: \\S+cache is owned by uid ${account.uid}, not by uid 0`));
  });

  it("an mtime moved forward does not stretch --cache-reuse: the storedAt inside decides", async () => {
    const c = setup();
    expect((await c.fetch()).exitCode).toBe(0);
    seal(c, { version: 1, specKey: specKey(), storedAt: Date.now() - 120_000, values: { [refs[0]!]: v1.password, [refs[1]!]: v1.key } });
    const future = new Date(Date.now() + 3600_000);
    utimesSync(join(c.cache, "app.cred"), future, future);
    server!.clearRequests();
    const r = await c.fetch(["--cache-reuse", "60"]);
    expect(r.exitCode, r.stderr).toBe(0);
    expect(r.stderr).not.toMatch(/using cached values/);
    expect(server!.requests.length).toBeGreaterThan(0);
  });

  it("the service's account, owner of the output directory, cannot make a write from the cache follow a link it planted", async () => {
    const c = setup({ owner: account.name });
    expect((await c.fetch()).exitCode).toBe(0);
    expect(lstatSync(c.out).uid).toBe(account.uid);
    const victim = join(c.dir, "victim");
    writeFileSync(victim, "root's file\n", { mode: 0o644 });
    // As the account: swap an output for a link to root's file.
    execFileSync("setpriv", [
      `--reuid=${account.uid}`,
      `--regid=${account.gid}`,
      "--clear-groups",
      "sh",
      "-c",
      `rm -f '${join(c.out, "password")}' && ln -s '${victim}' '${join(c.out, "password")}'`,
    ]);
    await stopServer();
    const r = await c.fetch();
    expect(r.exitCode, r.stderr).toBe(0);
    expect(r.stderr).toMatch(/using cached values/);
    expect(readFileSync(victim, "utf8")).toBe("root's file\n");
    expect(lstatSync(victim).uid).toBe(0);
    const st = lstatSync(join(c.out, "password"));
    expect(st.isFile()).toBe(true);
    expect(st.uid).toBe(account.uid);
    expect(c.password()).toBe(v1.password);
    expect(existsSync(join(c.markers, "app"))).toBe(true);
  });
});
