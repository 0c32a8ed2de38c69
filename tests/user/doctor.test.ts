/** `homelab-secrets doctor` against a real per-user setup, then with each thing broken. */
import { chmodSync, chownSync, copyFileSync, cpSync, existsSync, mkdirSync, rmSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { execa } from "execa";
import { afterAll, afterEach, beforeAll, expect, it } from "vitest";
import { buildWrapper } from "../../helper/scripts/build-wrapper.mjs";
import { cliPath, createHost, describeAsRoot, nodePath, repoRoot, type Host } from "./harness.js";

describeAsRoot("homelab-secrets doctor", () => {
  let host: Host;
  beforeAll(async () => {
    host = await createHost({ users: 1 });
    host.writeMapfile(`${host.users[0]!.name} op://V/A/one one.txt\n`);
  });
  afterAll(async () => {
    await host?.destroy();
  });
  const doctor = (wrapper: string | null = host.wrapper) =>
    execa(
      process.execPath,
      [
        cliPath(),
        "doctor",
        "--config-dir",
        host.configDir,
        ...(wrapper === null ? [] : ["--wrapper", wrapper]),
        "--service-user",
        host.svc.name,
      ],
      { reject: false },
    );
  const restore = () => {
    if (!existsSync(join(host.configDir, "token"))) writeFileSync(join(host.configDir, "token"), `${host.token}\n`);
    chmodSync(join(host.configDir, "token"), 0o600);
    chownSync(join(host.configDir, "token"), host.svc.uid, host.svc.gid);
    host.writeMapfile(`${host.users[0]!.name} op://V/A/one one.txt\n`);
    host.writeConfig({ source: { type: "file", path: host.vaultFile } });
    chownSync(host.wrapper, host.svc.uid, host.svc.gid);
    chmodSync(host.wrapper, 0o6755);
    chmodSync(host.configDir, 0o755);
    chownSync(host.vaultFile, host.svc.uid, host.svc.gid);
    chmodSync(host.vaultFile, 0o600);
    if (!existsSync(host.stateDir)) mkdirSync(host.stateDir);
    chownSync(host.stateDir, host.svc.uid, host.svc.gid);
    chmodSync(host.stateDir, 0o700);
  };
  afterEach(restore);

  it("passes a correct setup, one ok line per check", async () => {
    const r = await doctor();
    expect(r.exitCode, r.stdout).toBe(0);
    const lines = r.stdout.trim().split("\n");
    expect(lines.map((l) => l.split(":")[0])).toEqual([
      "ok      service account",
      "ok      config directory",
      "ok      mapfile",
      "ok      config.json",
      "ok      vault",
      "ok      token",
      "ok      wrapper",
      "ok      node",
      "ok      cli tree",
      "ok      cli as service account",
      "ok      rate-limit state",
    ]);
  });

  it("a file source needs no token: a missing token file is not unsafe", async () => {
    rmSync(join(host.configDir, "token"));
    const r = await doctor();
    expect(r.exitCode, r.stdout).toBe(0);
    expect(r.stdout).toMatch(/^ok {6}token: .*absent \(not needed: the file source reads no token\)$/m);
  });

  it("a token source without a token file is unsafe", async () => {
    rmSync(join(host.configDir, "token"));
    host.writeConfig({ source: { type: "connect", host: "http://127.0.0.1:9" } });
    const r = await doctor();
    expect(r.exitCode).toBe(78);
    expect(r.stdout).toMatch(/^UNSAFE {2}token: .*missing/m);
  });

  it("no wrapper found is a warning, never ok", async () => {
    // Precondition: this host has no installed wrapper at either default place.
    expect(existsSync("/run/wrappers/bin/homelab-secrets-user") || existsSync("/usr/bin/homelab-secrets-user")).toBe(false);
    const r = await doctor(null);
    expect(r.exitCode, r.stdout).toBe(0);
    expect(r.stdout).toMatch(
      /^WARN {4}wrapper: not checked: none at \/run\/wrappers\/bin\/homelab-secrets-user or \/usr\/bin\/homelab-secrets-user \(give --wrapper PATH\)$/m,
    );
    expect(r.stdout).not.toMatch(/^ok .*not checked/m);
  });

  it("a CLI tree the service account cannot read is unsafe: the wrapper's fetch could never start", async () => {
    // Root's and not writable by others (the tree check passes), but 0700: an install under umask 077.
    const tree = join(host.dir, "umask077");
    mkdirSync(join(tree, "helper"), { recursive: true });
    copyFileSync(join(repoRoot, "package.json"), join(tree, "package.json"));
    cpSync(dirname(cliPath()), join(tree, "helper", "dist"), { recursive: true });
    cpSync(join(repoRoot, "node_modules"), join(tree, "node_modules"), { recursive: true, verbatimSymlinks: true });
    chmodSync(join(tree, "helper", "dist"), 0o700);
    const wrapper = buildWrapper({
      configDir: host.configDir,
      out: join(host.dir, "bin", "umask077-wrapper"),
      stateDir: host.stateDir,
      node: nodePath(),
      cli: join(tree, "helper", "dist", "cli.js"),
    });
    chownSync(wrapper, host.svc.uid, host.svc.gid);
    chmodSync(wrapper, 0o6755);
    const r = await doctor(wrapper);
    expect(r.exitCode).toBe(78);
    expect(r.stdout).toMatch(/^ok {6}cli tree: /m);
    expect(r.stdout).toMatch(
      new RegExp(`^UNSAFE {2}cli as service account: .*${host.svc.name}.*cannot run ${tree}/helper/dist/cli\\.js`, "m"),
    );
    expect(r.stdout.match(/^UNSAFE/gm)).toHaveLength(1);
  });

  it("without a token source the rate-limit state may be absent", async () => {
    rmSync(host.stateDir, { recursive: true });
    const r = await doctor();
    expect(r.exitCode, r.stdout).toBe(0);
    expect(r.stdout).toMatch(/ok {6}rate-limit state: .*absent \(not needed/);
  });

  it.each([
    ["token readable by others", () => chmodSync(join(host.configDir, "token"), 0o644), /UNSAFE {2}token: .*accessible to group or others/],
    ["token owned by root", () => chownSync(join(host.configDir, "token"), 0, 0), /UNSAFE {2}token: .*not owned by/],
    ["mapfile group-writable", () => host.writeMapfile("", { mode: 0o660 }), /UNSAFE {2}mapfile: .*writable by group or others/],
    ["mapfile world-readable", () => host.writeMapfile("", { mode: 0o644 }), /UNSAFE {2}mapfile: .*readable by others/],
    [
      "mapfile owned by the service account",
      () => host.writeMapfile("", { owner: host.svc.uid }),
      /UNSAFE {2}mapfile: .*not owned by root/,
    ],
    ["mapfile in root's group", () => host.writeMapfile("", { group: 0 }), /UNSAFE {2}mapfile: .*group is not/],
    [
      "config.json writable by others",
      () => chmodSync(join(host.configDir, "config.json"), 0o666),
      /UNSAFE {2}config\.json: .*writable by group or others/,
    ],
    ["config.json invalid", () => writeFileSync(join(host.configDir, "config.json"), "{"), /UNSAFE {2}config\.json: .*not valid JSON/],
    ["wrapper without SUID", () => chmodSync(host.wrapper, 0o2755), /UNSAFE {2}wrapper: .*not set-user-ID/],
    ["wrapper without SGID", () => chmodSync(host.wrapper, 0o4755), /UNSAFE {2}wrapper: .*not set-group-ID/],
    ["wrapper world-writable", () => chmodSync(host.wrapper, 0o6757), /UNSAFE {2}wrapper: .*writable by group or others/],
    [
      "wrapper SUID root",
      () => {
        chownSync(host.wrapper, 0, 0);
        chmodSync(host.wrapper, 0o6755);
      },
      /UNSAFE {2}wrapper: .*set-user-ID root/,
    ],
    ["file-source vault readable by others", () => chmodSync(host.vaultFile, 0o644), /UNSAFE {2}vault: .*readable by others/],
    [
      "file-source vault owned by a user",
      () => chownSync(host.vaultFile, host.users[0]!.uid, host.users[0]!.gid),
      /UNSAFE {2}vault: .*not owned by root or/,
    ],
    [
      "config directory group-writable",
      () => chmodSync(host.configDir, 0o775),
      /UNSAFE {2}config directory: .*writable by group or others/,
    ],
    [
      "rate-limit state owned by root",
      () => chownSync(host.stateDir, 0, 0),
      /UNSAFE {2}rate-limit state: .*not owned by the service account/,
    ],
    [
      "rate-limit state group-readable",
      () => chmodSync(host.stateDir, 0o750),
      /UNSAFE {2}rate-limit state: .*accessible to group or others/,
    ],
    [
      "rate-limit state missing with a token source",
      () => {
        rmSync(host.stateDir, { recursive: true });
        host.writeConfig({ source: { type: "connect", host: "http://127.0.0.1:9" } });
      },
      /UNSAFE {2}rate-limit state: .*missing: the per-user rate limit is off/,
    ],
  ])("flags %s (exit 78)", async (_name, breakIt, pattern) => {
    breakIt();
    const r = await doctor();
    expect(r.exitCode).toBe(78);
    expect(r.stdout).toMatch(pattern);
    expect(r.stdout.match(/^UNSAFE/gm)).toHaveLength(1);
  });
});
