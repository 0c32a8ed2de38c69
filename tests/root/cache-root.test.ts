// fetch --cache with the REAL systemd-creds of this host and a fake Connect server (the real
// protocol). The host key is a temporary file (SYSTEMD_CREDENTIAL_SECRET, which systemd-creds
// honours), the cache a temporary directory: the host's /var/lib/systemd is never touched.
import { execFileSync } from "node:child_process";
import { createHash } from "node:crypto";
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, utimesSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { execa } from "execa";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { cacheKey, credentialName } from "../../helper/src/cache/key.js";
import { parseReference } from "../../helper/src/reference.js";
import { startFakeConnect, type FakeConnect, type FileVault } from "../connect/fake-connect.mjs";
import { hasCommand, rootSkipReason } from "./root-env.js";

const cli = join(import.meta.dirname, "../../helper/dist/cli.js");
const skip = rootSkipReason(["systemd-creds"]);
const token = "cache-root-token-7d1e";
const values = { password: 'pw "cached" $HOME `x` 7f3a9c', key: "api-key-cached-5b2e81d0" };
const vault = (v = values): FileVault => ({
  vaults: { Lab: { items: { App: { fields: { password: v.password }, sections: { API: { key: v.key } } } } } },
});
const refs = ["op://Lab/App/password", "op://Lab/App/API/key"];

describe.skipIf(skip !== undefined || !hasCommand("systemd-creds"))("fetch --cache with the real systemd-creds", () => {
  let work: string;
  let server: FakeConnect | undefined;
  let port = 0;
  let n = 0;

  beforeAll(async () => {
    work = mkdtempSync(join(tmpdir(), "hs-cache-root-"));
    server = await startFakeConnect({ vault: vault(), token });
    port = server.port;
  });
  afterEach(async () => {
    // Every test starts with the backend up, serving `vault()`.
    await server?.close();
    server = await startFakeConnect({ vault: vault(), token, port });
  });
  afterAll(async () => {
    await server?.close();
    rmSync(work, { recursive: true, force: true });
  });

  /** A fresh case: its own spec, output, cache and marker directories, host key and token file. */
  function setup(extraRefs: string[] = []) {
    const dir = join(work, `case${++n}`);
    execFileSync("mkdir", ["-m", "0700", "-p", dir]);
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
    const writeSpec = (more: string[] = extraRefs) =>
      writeFileSync(
        paths.spec,
        JSON.stringify({
          version: 1,
          name: "app",
          outputDir: paths.out,
          source: { type: "connect", host: `http://127.0.0.1:${port}` },
          files: { password: { ref: refs[0], mode: "0400" }, ...Object.fromEntries(more.map((r, i) => [`extra${i}`, { ref: r }])) },
          envFiles: { "app.env": { vars: { API_KEY: refs[1] } } },
          templates: { "c.ini": { content: "pw = {{ op://Lab/App/password }}\n" } },
        }),
      );
    writeSpec();
    const fetch = (flags: string[] = [], key = paths.key) =>
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
        { reject: false, env: { SYSTEMD_CREDENTIAL_SECRET: key } },
      );
    const outputs = () => Object.fromEntries(readdirSync(paths.out).map((f) => [f, readFileSync(join(paths.out, f), "utf8")]));
    return { ...paths, fetch, outputs, writeSpec };
  }

  const stopServer = async () => {
    await server!.close();
    server = undefined;
  };

  /** Seal a cache entry by hand (as the helper would) with a chosen storedAt. */
  function sealByHand(c: ReturnType<typeof setup>, storedAt: number) {
    const key = cacheKey(
      { type: "connect", host: `http://127.0.0.1:${port}` },
      refs.map((r) => parseReference(r)),
    );
    const entry = { version: 1, specKey: key, storedAt, values: { [refs[0]!]: values.password, [refs[1]!]: values.key } };
    execFileSync("systemd-creds", ["encrypt", "--with-key=auto", `--name=${credentialName("app", key)}`, "-", join(c.cache, "app.cred")], {
      input: JSON.stringify(entry),
      env: { ...process.env, SYSTEMD_CREDENTIAL_SECRET: c.key },
      stdio: ["pipe", "ignore", "ignore"],
    });
  }

  it("a fresh fetch seals the values (0700 dir, 0600 file, no value in any byte); with the backend down they stand in: same files, exit 0, a warning, a marker", async () => {
    const c = setup();
    const fresh = await c.fetch();
    expect(fresh.exitCode, fresh.stderr).toBe(0);
    const before = c.outputs();
    expect(before["password"]).toBe(values.password);
    expect((statSync(c.cache).mode & 0o777).toString(8)).toBe("700");
    expect(readdirSync(c.cache)).toEqual(["app.cred"]);
    expect((statSync(join(c.cache, "app.cred")).mode & 0o777).toString(8)).toBe("600");
    for (const f of readdirSync(c.cache)) {
      const bytes = readFileSync(join(c.cache, f));
      for (const v of [values.password, values.key, "cached", "api-key"])
        expect(bytes.includes(Buffer.from(v)), `${v} in ${f}`).toBe(false);
    }
    expect(existsSync(c.markers) ? readdirSync(c.markers) : []).toEqual([]);

    await stopServer(); // connection refused until the deadline
    const cached = await c.fetch();
    expect(cached.exitCode, cached.stderr).toBe(0);
    expect(cached.stderr).toMatch(
      /warn: app: using cached values from \d+ s ago \(the backend failed: could not resolve op:\/\/Lab\/App\/password, op:\/\/Lab\/App\/API\/key: deadline of 2s passed/,
    );
    expect(c.outputs()).toEqual(before);
    const marker = JSON.parse(readFileSync(join(c.markers, "app"), "utf8")) as Record<string, unknown>;
    expect(Object.keys(marker).sort()).toEqual(["reason", "since", "storedAt"]);
    expect(JSON.stringify(marker)).not.toContain(values.password);

    // doctor lists it; the next fresh success removes it.
    const doctor = await execa(process.execPath, [cli, "doctor", "--config-dir", c.dir, "--cache-marker-dir", c.markers], {
      reject: false,
    });
    expect(doctor.stdout).toMatch(/^WARN {4}cached values: app runs on values fetched \d+ s ago, since \S+Z: could not resolve/m);
    server = await startFakeConnect({ vault: vault(), token, port });
    const again = await c.fetch();
    expect(again.exitCode, again.stderr).toBe(0);
    expect(readdirSync(c.markers)).toEqual([]);
  });

  it("cleanup removes the marker and leaves the sealed cache", async () => {
    const c = setup();
    expect((await c.fetch()).exitCode).toBe(0);
    await stopServer();
    expect((await c.fetch()).exitCode).toBe(0);
    expect(readdirSync(c.markers)).toEqual(["app"]);
    const r = await execa(process.execPath, [cli, "cleanup", "--spec", c.spec, "--cache-marker-dir", c.markers], { reject: false });
    expect(r.exitCode, r.stderr).toBe(0);
    expect(readdirSync(c.markers)).toEqual([]);
    expect(readdirSync(c.cache)).toEqual(["app.cred"]);
    expect(existsSync(c.out)).toBe(false);
  });

  it("a 429 past the deadline (class 75, Retry-After) falls back to the cache", async () => {
    const c = setup();
    expect((await c.fetch()).exitCode).toBe(0);
    server!.clearRequests();
    server!.setFaults([{ type: "status", status: 429, retryAfter: 1 }]);
    const r = await c.fetch();
    expect(r.exitCode, r.stderr).toBe(0);
    expect(server!.requests.length, "it asked the backend first").toBeGreaterThan(0);
    expect(server!.requests.every((q) => q.status === 429)).toBe(true);
    expect(r.stderr).toMatch(/attempt 1 failed \(.*HTTP 429/);
    expect(r.stderr).toMatch(
      /warn: app: using cached values from \d+ s ago \(the backend failed: could not resolve .*deadline of 2s passed/,
    );
    expect(c.outputs()["password"]).toBe(values.password);
  });

  it("a rejected token (401: 77) with a warm cache fails and leaves the outputs as they were", async () => {
    const c = setup();
    expect((await c.fetch()).exitCode).toBe(0);
    const before = c.outputs();
    writeFileSync(c.token, "wrong-token\n", { mode: 0o600 }); // same file: the same cache key
    const r = await c.fetch();
    expect(r.exitCode, r.stderr).toBe(77);
    expect(r.stderr).toMatch(/cached values are used only for recognised temporary failures \(exit 75\), not for this one \(exit 77\)/);
    expect(r.stderr).not.toMatch(/using cached values/);
    expect(c.outputs()).toEqual(before);
    expect(existsSync(c.markers) ? readdirSync(c.markers) : []).toEqual([]);
  });

  it("a reference that no longer exists (69) with a warm cache fails", async () => {
    const c = setup();
    expect((await c.fetch()).exitCode).toBe(0);
    await stopServer();
    server = await startFakeConnect({ vault: { vaults: { Lab: { items: {} } } }, token, port });
    const r = await c.fetch();
    expect(r.exitCode, r.stderr).toBe(69);
    expect(r.stderr).toMatch(/not for this one \(exit 69\)/);
    expect(r.stderr).not.toMatch(/using cached values/);
  });

  it("a cache sealed under another host key does not decrypt: the fetch fails 75 and says why", async () => {
    const c = setup();
    expect((await c.fetch()).exitCode).toBe(0);
    const otherKey = join(c.dir, "other.secret");
    execFileSync("systemd-creds", ["encrypt", "--name=x", "-", join(c.dir, "x.cred")], {
      input: "x",
      env: { ...process.env, SYSTEMD_CREDENTIAL_SECRET: otherKey },
      stdio: ["pipe", "ignore", "ignore"],
    });
    expect(readFileSync(otherKey).equals(readFileSync(c.key))).toBe(false);
    await stopServer();
    const r = await c.fetch([], otherKey);
    expect(r.exitCode, r.stderr).toBe(75);
    expect(r.stderr).toMatch(
      /warn: app: cached values not used: \S+app\.cred does not decrypt for this spec on this host \(systemd-creds decrypt exited 1/,
    );
    expect(r.stderr).toMatch(/error: could not resolve/);
  });

  it("older than --cache-max-age: refused, the file removed, the 75 stands", async () => {
    const c = setup();
    expect((await c.fetch()).exitCode).toBe(0);
    sealByHand(c, Date.now() - 8 * 86400_000);
    await stopServer();
    const r = await c.fetch();
    expect(r.exitCode, r.stderr).toBe(75);
    expect(r.stderr).toMatch(/cached values not used: it is 8 d old, older than the maximum age of 7 d; removed \S+app\.cred/);
    expect(readdirSync(c.cache)).toEqual([]);
    expect(existsSync(c.out), "a failed run leaves previous secrets untouched").toBe(true);
  });

  it("stored in the future: refused (the clock may be wrong), kept", async () => {
    const c = setup();
    expect((await c.fetch()).exitCode).toBe(0);
    sealByHand(c, Date.now() + 3600_000);
    await stopServer();
    const r = await c.fetch();
    expect(r.exitCode, r.stderr).toBe(75);
    expect(r.stderr).toMatch(/cached values not used: it was stored (59 min \d+ s|1 h) in the future .*is the clock right\?/);
    expect(readdirSync(c.cache)).toEqual(["app.cred"]);
  });

  it("a hand-sealed entry within max age is used (the file format is the documented one)", async () => {
    const c = setup();
    expect((await c.fetch()).exitCode).toBe(0);
    sealByHand(c, Date.now() - 3 * 3600_000);
    await stopServer();
    const r = await c.fetch();
    expect(r.exitCode, r.stderr).toBe(0);
    expect(r.stderr).toMatch(/using cached values from (2 h 59 min|3 h) ago/);
  });

  it("after the spec changes what it fetches, the old cache is not used", async () => {
    const c = setup();
    expect((await c.fetch()).exitCode).toBe(0);
    c.writeSpec(["op://Lab/App/password"]); // same references: still the same key
    await stopServer();
    expect((await c.fetch()).exitCode, "same references, other outputs: usable").toBe(0);
    c.writeSpec(["op://Lab/Other/password"]);
    const r = await c.fetch();
    expect(r.exitCode, r.stderr).toBe(75);
    expect(r.stderr).toMatch(/cached values not used: \S+app\.cred does not decrypt for this spec on this host \(.*does not match/);
  });

  it("--cache-reuse: a start within the window after a fresh fetch asks the backend nothing", async () => {
    const c = setup();
    expect((await c.fetch()).exitCode).toBe(0);
    server!.clearRequests();
    const r = await c.fetch(["--cache-reuse", "60"]);
    expect(r.exitCode, r.stderr).toBe(0);
    expect(server!.requests).toEqual([]);
    expect(r.stderr).toMatch(/app: using cached values from \d+ s ago without asking the backend/);
    expect(c.outputs()["password"]).toBe(values.password);
    // Without the window (default 0) it asks again.
    const fresh = await c.fetch();
    expect(fresh.exitCode).toBe(0);
    expect(server!.requests.length).toBeGreaterThan(0);
  });

  it("--cache-reuse: values fetched before the window are not reused; the backend is asked", async () => {
    const c = setup();
    expect((await c.fetch()).exitCode).toBe(0);
    sealByHand(c, Date.now() - 120_000); // a file written now, holding values fetched 2 min ago
    server!.clearRequests();
    const r = await c.fetch(["--cache-reuse", "60"]);
    expect(r.exitCode, r.stderr).toBe(0);
    expect(server!.requests.length).toBeGreaterThan(0);
    expect(r.stderr).not.toMatch(/using cached values/);

    // A file last written before the window is not even decrypted.
    sealByHand(c, Date.now());
    utimesSync(join(c.cache, "app.cred"), new Date(Date.now() - 120_000), new Date(Date.now() - 120_000));
    server!.clearRequests();
    const old = await c.fetch(["--cache-reuse", "60", "--verbose"]);
    expect(old.exitCode, old.stderr).toBe(0);
    expect(server!.requests.length).toBeGreaterThan(0);
  });

  it("without --cache nothing is written to the cache directory and a 75 stays a 75", async () => {
    const c = setup();
    const plain = (flags: string[]) =>
      execa(process.execPath, [cli, "fetch", "--spec", c.spec, "--token-file", c.token, "--deadline", "2", ...flags], {
        reject: false,
        env: { SYSTEMD_CREDENTIAL_SECRET: c.key },
      });
    expect((await plain([])).exitCode).toBe(0);
    expect(existsSync(c.cache)).toBe(false);
    expect((await c.fetch()).exitCode).toBe(0);
    await stopServer();
    expect((await plain([])).exitCode).toBe(75);
  });

  it("a store that fails (cache dir not private) only warns; the fetch succeeds", async () => {
    const c = setup();
    execFileSync("mkdir", ["-m", "0755", c.cache]);
    const r = await c.fetch();
    expect(r.exitCode, r.stderr).toBe(0);
    expect(r.stderr).toMatch(/warn: app: fetched fresh, but could not update the cache: \S+cache is accessible to group or others/);
    expect(readdirSync(c.cache)).toEqual([]);
    expect(createHash("sha256").update(c.outputs()["password"]!).digest("hex")).toBe(
      createHash("sha256").update(values.password).digest("hex"),
    );
  });
});
