/**
 * Per-user mode for a system service's account: no login session, so no /run/user/<uid>.
 * Relative mapfile paths need that directory; absolute ones (under the service's
 * RuntimeDirectory=) work without it.
 */
import { execFileSync } from "node:child_process";
import { chownSync, existsSync, mkdirSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, beforeEach, expect, it } from "vitest";
import { cliPath, createHost, describeAsRoot, type Account, type Host } from "./harness.js";

const vault = { vaults: { V: { items: { A: { fields: { one: "alpha-1", two: "alpha-2" } } } } } };

describeAsRoot("per-user mode for an account without /run/user/<uid>", () => {
  let host: Host;
  let svcUser: Account;
  let runtimeDir: string;

  beforeAll(async () => {
    host = await createHost({ users: 1, vault });
    [svcUser] = host.users as [Account];
    runtimeDir = join(host.dir, "run-myapp");
  });
  afterAll(async () => {
    await host?.destroy();
  });
  beforeEach(() => {
    // What a system account has: no runtime directory from logind.
    rmSync(`/run/user/${svcUser.uid}`, { recursive: true, force: true });
    // What systemd's RuntimeDirectory=myapp makes for User=: the account's own 0700 directory.
    rmSync(runtimeDir, { recursive: true, force: true });
    mkdirSync(runtimeDir, { mode: 0o700 });
    chownSync(runtimeDir, svcUser.uid, svcUser.gid);
  });

  it("a relative path is refused in one line naming the fix (73), before anything is fetched", async () => {
    // B/one does not exist: had the fetch run first, the run would fail with "not found" instead.
    host.writeMapfile(`${svcUser.name} op://V/A/one one.txt\n${svcUser.name} op://V/B/one b.txt\n`);
    const r = await host.run(svcUser, []);
    expect(r.exitCode, r.stderr).toBe(73);
    expect(r.stderr.trim().split("\n")).toHaveLength(1);
    expect(r.stderr).toContain(
      `${svcUser.name} has no /run/user/${svcUser.uid} (no login session), so relative mapfile paths cannot be written: ` +
        `give absolute paths (e.g. under the service's RuntimeDirectory=) or run loginctl enable-linger ${svcUser.name}`,
    );
    expect(r.stderr).toContain(`${host.configDir}/mapfile:1`);
    expect(existsSync(`/run/user/${svcUser.uid}`)).toBe(false);
  });

  it("absolute paths under the service's RuntimeDirectory= are written 0600, and --cleanup removes them", async () => {
    host.writeMapfile(`${svcUser.name} op://V/A/one ${runtimeDir}/one.txt\n${svcUser.name} op://V/A/two ${runtimeDir}/sub/two.txt\n`);
    const r = await host.run(svcUser, []);
    expect(r.exitCode, r.stderr).toBe(0);
    expect(readFileSync(join(runtimeDir, "one.txt"), "utf8")).toBe("alpha-1");
    expect(readFileSync(join(runtimeDir, "sub", "two.txt"), "utf8")).toBe("alpha-2");
    const st = statSync(join(runtimeDir, "one.txt"));
    expect([st.uid, st.mode & 0o777]).toEqual([svcUser.uid, 0o600]);
    const c = await host.run(svcUser, ["--cleanup"]);
    expect(c.exitCode, c.stderr).toBe(0);
    expect(existsSync(join(runtimeDir, "one.txt"))).toBe(false);
    // The wrapper's --serialize lock is on the mapfile it opened: no /run/user/<uid> needed.
    const serialized = await host.run(svcUser, ["--serialize"]);
    expect(serialized.exitCode, serialized.stderr).toBe(0);
    expect(readFileSync(join(runtimeDir, "one.txt"), "utf8")).toBe("alpha-1");
  });

  it("--cleanup of relative entries without /run/user/<uid> removes nothing and succeeds (ExecStopPost= must not fail)", async () => {
    host.writeMapfile(`${svcUser.name} op://V/A/one one.txt\n`);
    const c = await host.run(svcUser, ["--cleanup"]);
    expect(c.exitCode, c.stderr).toBe(0);
  });

  it("the direct CLI with --serialize says where its lock would live and what to use instead (73)", async () => {
    const home = join(host.dir, `serialize-${svcUser.name}`);
    mkdirSync(join(home, "conf"), { recursive: true });
    writeFileSync(join(home, "vault.json"), JSON.stringify(vault));
    writeFileSync(join(home, "conf", "config.json"), JSON.stringify({ source: { type: "file", path: join(home, "vault.json") } }));
    writeFileSync(join(home, "map"), `${svcUser.name} op://V/A/one ${runtimeDir}/one.txt\n`);
    execFileSync("chown", ["-R", `${svcUser.uid}:${svcUser.gid}`, home]);
    const r = await host.runAs(svcUser, process.execPath, [
      cliPath(),
      "user",
      "--serialize",
      "-map-file-path",
      join(home, "map"),
      "--config-dir",
      join(home, "conf"),
    ]);
    expect(r.exitCode, r.stderr).toBe(73);
    expect(r.stderr.trim().split("\n")).toHaveLength(1);
    expect(r.stderr).toContain(
      `--serialize keeps its lock in /run/user/${svcUser.uid}, which ${svcUser.name} does not have (no login session): ` +
        `run through the wrapper (homelab-secrets-user --serialize needs no such directory), or loginctl enable-linger ${svcUser.name}`,
    );
    expect(existsSync(join(runtimeDir, "one.txt"))).toBe(false);
  });

  it("the direct CLI (no wrapper, own mapfile and source) gives the same line", async () => {
    const home = join(host.dir, `home-${svcUser.name}`);
    mkdirSync(join(home, "conf"), { recursive: true });
    writeFileSync(join(home, "vault.json"), JSON.stringify(vault));
    writeFileSync(join(home, "conf", "config.json"), JSON.stringify({ source: { type: "file", path: join(home, "vault.json") } }));
    writeFileSync(join(home, "map"), `${svcUser.name} op://V/A/one one.txt\n`);
    execFileSync("chown", ["-R", `${svcUser.uid}:${svcUser.gid}`, home]);
    const r = await host.runAs(svcUser, process.execPath, [
      cliPath(),
      "user",
      "-map-file-path",
      join(home, "map"),
      "--config-dir",
      join(home, "conf"),
    ]);
    expect(r.exitCode, r.stderr).toBe(73);
    expect(r.stderr.trim().split("\n")).toHaveLength(1);
    expect(r.stderr).toContain(`${svcUser.name} has no /run/user/${svcUser.uid} (no login session)`);
  });
});
