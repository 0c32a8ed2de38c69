// `homelab-secrets refresh --from-credentials` as a real process, as root: what a throughAgent
// `<name>-secrets-refresh.service` runs. The rendered bytes come from a temp
// $CREDENTIALS_DIRECTORY (as systemd leaves the agent's fresh answers there), the files belong
// to a real service account, and a fake `systemctl` first on PATH records its argv.
import { chmodSync, mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { execa } from "execa";
import { afterAll, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { createAccount, rootSkipReason, type TestAccount } from "./root-env.js";

const cli = join(import.meta.dirname, "../../helper/dist/cli.js");
const skip = rootSkipReason();

describe.skipIf(skip !== undefined)("refresh --from-credentials as root: a temp CREDENTIALS_DIRECTORY, a recording systemctl", () => {
  let work: string;
  let svc: TestAccount;
  let out: string;
  let creds: string;
  let specFile: string;
  let bin: string;
  let argvLog: string;

  const run = (command: string, args: string[] = []) =>
    execa(process.execPath, [cli, command, "--spec", specFile, ...args], {
      reject: false,
      env: { PATH: `${bin}:${process.env["PATH"]}`, HOME: work, CREDENTIALS_DIRECTORY: creds },
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
  const credential = (name: string, content: string) => writeFileSync(join(creds, name), content, { mode: 0o400 });
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
  /** What the `<name>-secrets` unit's install wrote: the starting point of every case. */
  const installed = async () => {
    credential("password", "pw-v1");
    credential("app.env", 'APP_PASSWORD="pw-v1"\n');
    const result = await run("install");
    expect(result.exitCode, result.stderr).toBe(0);
    return snapshot();
  };

  beforeAll(() => {
    svc = createAccount("hsrc");
    work = mkdtempSync(join(tmpdir(), "hs-refresh-creds-"));
    bin = join(work, "bin");
    mkdirSync(bin);
    argvLog = join(work, "systemctl.argv");
    writeFileSync(
      join(bin, "systemctl"),
      `#!/bin/sh\nline=""\nfor a in "$@"; do line="$line[$a]"; done\necho "$line" >>"${argvLog}"\nexit 0\n`,
    );
    chmodSync(join(bin, "systemctl"), 0o755);
    out = join(work, "run", "app-secrets");
    creds = join(work, "credentials");
    specFile = join(work, "app.json");
    writeFileSync(
      specFile,
      JSON.stringify({
        version: 1,
        name: "app",
        outputDir: out,
        owner: svc.name,
        group: svc.name,
        dirMode: "0750",
        files: { password: { ref: "op://Lab/App/password", mode: "0400" } },
        envFiles: { "app.env": { mode: "0440", vars: { APP_PASSWORD: "op://Lab/App/password" } } },
      }),
    );
  });
  beforeEach(() => {
    rmSync(argvLog, { force: true });
    rmSync(join(work, "run"), { recursive: true, force: true });
    rmSync(creds, { recursive: true, force: true });
    mkdirSync(creds, { mode: 0o700 });
  });
  afterAll(() => {
    rmSync(work, { recursive: true, force: true });
    svc?.remove();
  });

  it("unchanged: nothing written, systemctl never run", async () => {
    const before = await installed();
    const refreshed = await run("refresh", ["--from-credentials", "--restart", "app.service"]);
    expect(refreshed.exitCode, refreshed.stderr).toBe(0);
    expect(refreshed.stderr).toMatch(/app: unchanged \(2 file\(s\) from the credential agent\); nothing written/);
    expect(snapshot()).toEqual(before);
    expect(recorded()).toEqual([]);
  });

  it("a rotated value: every file rewritten for the service account, one try-restart; again: nothing", async () => {
    const before = await installed();
    credential("password", "pw-v2 rotated");
    credential("app.env", 'APP_PASSWORD="pw-v2 rotated"\n');
    const refreshed = await run("refresh", ["--from-credentials", "--restart", "app.service"]);
    expect(refreshed.exitCode, refreshed.stderr).toBe(0);
    const after = snapshot();
    expect(after[0]).toMatchObject({ content: "pw-v2 rotated", uid: svc.uid, gid: svc.gid, mode: 0o400 });
    expect(after[1]).toMatchObject({ content: 'APP_PASSWORD="pw-v2 rotated"\n', uid: svc.uid, gid: svc.gid, mode: 0o440 });
    expect(after[0]!.ino).not.toBe(before[0]!.ino);
    expect(after[1]!.ino).not.toBe(before[1]!.ino);
    expect(recorded()).toEqual(["[try-restart][--job-mode=ignore-requirements][app.service]"]);
    expect(refreshed.stderr).toMatch(/app: changed: password \(content\), app\.env \(content\)/);
    for (const v of ["pw-v1", "pw-v2 rotated"]) expect(refreshed.stderr).not.toContain(v);

    const again = await run("refresh", ["--from-credentials", "--restart", "app.service"]);
    expect(again.exitCode, again.stderr).toBe(0);
    expect(snapshot()).toEqual(after);
    expect(recorded()).toHaveLength(1);
  });

  it("a mode changed on disk: rewritten with the spec's mode; --reload: try-reload-or-restart", async () => {
    await installed();
    chmodSync(join(out, "password"), 0o444);
    const refreshed = await run("refresh", ["--from-credentials", "--reload", "app.service"]);
    expect(refreshed.exitCode, refreshed.stderr).toBe(0);
    expect(snapshot()[0]).toMatchObject({ content: "pw-v1", mode: 0o400 });
    expect(recorded()).toEqual(["[try-reload-or-restart][--job-mode=ignore-requirements][app.service]"]);
  });

  it("an empty or a missing credential: exit 75, files untouched, nothing restarted", async () => {
    const before = await installed();
    credential("password", "pw-v2");
    writeFileSync(join(creds, "app.env"), "", { mode: 0o400 });
    const empty = await run("refresh", ["--from-credentials", "--restart", "app.service"]);
    expect(empty.exitCode, empty.stderr).toBe(75);
    expect(empty.stderr).toMatch(/credential app\.env is empty/);
    rmSync(join(creds, "app.env"));
    const missing = await run("refresh", ["--from-credentials", "--restart", "app.service"]);
    expect(missing.exitCode, missing.stderr).toBe(75);
    expect(missing.stderr).toMatch(/credential app\.env was not loaded/);
    expect(snapshot()).toEqual(before);
    expect(recorded()).toEqual([]);
  });

  it("the service not running (no outputDir): exit 0, nothing created, nothing restarted", async () => {
    credential("password", "pw-v1");
    credential("app.env", 'APP_PASSWORD="pw-v1"\n');
    const refreshed = await run("refresh", ["--from-credentials", "--restart", "app.service"]);
    expect(refreshed.exitCode, refreshed.stderr).toBe(0);
    expect(refreshed.stderr).toMatch(/does not exist \(the service is not running\)/);
    expect(() => statSync(out)).toThrow();
    expect(recorded()).toEqual([]);
  });

  it("--from-credentials with --cache: a usage error (64), nothing touched", async () => {
    const before = await installed();
    credential("password", "pw-v2");
    const refreshed = await run("refresh", ["--from-credentials", "--cache", "--restart", "app.service"]);
    expect(refreshed.exitCode, refreshed.stderr).toBe(64);
    expect(snapshot()).toEqual(before);
    expect(recorded()).toEqual([]);
  });

  it("no CREDENTIALS_DIRECTORY: 78", async () => {
    await installed();
    const refreshed = await execa(process.execPath, [cli, "refresh", "--spec", specFile, "--from-credentials"], {
      reject: false,
      env: { PATH: `${bin}:${process.env["PATH"]}`, HOME: work },
      extendEnv: false,
    });
    expect(refreshed.exitCode, refreshed.stderr).toBe(78);
    expect(refreshed.stderr).toMatch(/CREDENTIALS_DIRECTORY is not set/);
  });
});
