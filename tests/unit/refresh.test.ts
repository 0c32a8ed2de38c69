// runRefresh in-process against the file source: the decisions (not running / unchanged /
// changed), all-or-nothing rewrites, what reaches systemctl, and what a failure leaves. The
// systemctl call is recorded, not run; files are real.
import { mkdirSync, rmSync } from "node:fs";
import { chmod, mkdir, readFile, readdir, rm, stat, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { afterAll, beforeEach, describe, expect, it } from "vitest";
import { runRefresh, type RefreshOptions } from "../../helper/src/commands/refresh.js";
import { runFetch } from "../../helper/src/commands/fetch.js";
import { HomelabError } from "../../helper/src/errors.js";
import type { Logger } from "../../helper/src/log.js";
import type { OnChange } from "../../helper/src/refresh/systemctl.js";
import { makeTempDir, removeTempDirs, runCli, writeSpec, writeVault } from "../helpers.js";

afterAll(removeTempDirs);

const values = { password: 'pw-v1 $HOME "q"', user: "admin-v1" };
let dir: string;
let out: string;
let vaultFile: string;
let specFile: string;
let lines: string[];
let calls: Array<{ action: OnChange; units: readonly string[] }>;
const log: Logger = {
  error: (m) => lines.push(`error ${m}`),
  warn: (m) => lines.push(`warn ${m}`),
  info: (m) => lines.push(`info ${m}`),
  debug: (m) => lines.push(`debug ${m}`),
};

const vault = (v: Partial<typeof values> = {}) => writeVault(dir, { Lab: { App: { fields: { ...values, ...v } } } });

beforeEach(async () => {
  dir = await makeTempDir("hs-refresh-");
  out = join(dir, "out");
  vaultFile = await vault();
  specFile = await writeSpec(dir, {
    version: 1,
    name: "app",
    outputDir: out,
    source: { type: "file", path: vaultFile },
    files: { password: { ref: "op://Lab/App/password", mode: "0400" } },
    envFiles: { "app.env": { vars: { APP_USER: "op://Lab/App/user" }, mode: "0440" } },
    templates: { "config.ini": { content: "user = {{ op://Lab/App/user }}\n" } },
  });
  lines = [];
  calls = [];
});

const options = (extra: Partial<RefreshOptions> = {}): RefreshOptions => ({
  specFile,
  overrides: {},
  deadlineSeconds: 5,
  serialize: false,
  onChange: { action: "restart", units: ["app.service"] },
  log,
  systemctl: (action, units) => {
    calls.push({ action, units });
    return Promise.resolve();
  },
  ...extra,
});
const fetch = () => runFetch({ specFile, overrides: {}, deadlineSeconds: 5, serialize: false, log });
const snapshot = async () => {
  const names = (await readdir(out)).sort();
  return Promise.all(
    names.map(async (name) => {
      const s = await stat(join(out, name), { bigint: true });
      return { name, ino: s.ino, mtimeNs: s.mtimeNs, mode: Number(s.mode) & 0o7777, content: await readFile(join(out, name), "utf8") };
    }),
  );
};

describe("refresh", () => {
  it("no outputDir: nothing refreshed, nothing created, the backend not asked, exit 0", async () => {
    await rm(vaultFile);
    const result = await runRefresh(options());
    expect(result.outcome).toBe("not-running");
    await expect(stat(out)).rejects.toMatchObject({ code: "ENOENT" });
    expect(calls).toEqual([]);
    expect(lines.join("\n")).toMatch(/does not exist \(the service is not running\); nothing refreshed, nothing restarted/);
  });

  it("an outputDir holding none of the outputs (cleaned up after a stop): nothing written", async () => {
    await mkdir(out, { mode: 0o750 });
    const result = await runRefresh(options());
    expect(result.outcome).toBe("not-running");
    expect(await readdir(out)).toEqual([]);
    expect(calls).toEqual([]);
  });

  it("unchanged: no file touched (same inode, same mtime), no temp file left, nothing restarted", async () => {
    await fetch();
    const before = await snapshot();
    const result = await runRefresh(options());
    expect(result).toMatchObject({ outcome: "unchanged", differences: [], notified: [] });
    expect(await snapshot()).toEqual(before);
    expect(calls).toEqual([]);
    expect(lines.filter((l) => l.startsWith("info")).join("\n")).toMatch(
      /app: unchanged \(3 file\(s\) from 2 reference\(s\) via file\); nothing written/,
    );
  });

  it("one value rotated: every output rewritten (new inodes), new content, one try-restart of the consumer only", async () => {
    await fetch();
    const before = await snapshot();
    await vault({ user: "admin-v2" });
    const result = await runRefresh(options());
    expect(result.outcome).toBe("changed");
    expect(result.differences.map((d) => d.name).sort()).toEqual(["app.env", "config.ini"]);
    const after = await snapshot();
    expect(after.map((f) => f.name)).toEqual(before.map((f) => f.name));
    for (const [i, f] of after.entries()) expect(f.ino, `${f.name} rewritten`).not.toBe(before[i]!.ino);
    expect(after.find((f) => f.name === "config.ini")?.content).toBe("user = admin-v2\n");
    expect(after.find((f) => f.name === "password")?.content).toBe(values.password);
    expect(calls).toEqual([{ action: "restart", units: ["app.service"] }]);
    const text = lines.join("\n");
    expect(text).toMatch(/app: changed: app\.env \(content\), config\.ini \(content\)/);
    for (const v of [values.password, values.user, "admin-v2"]) expect(text).not.toContain(v);
  });

  it("same bytes but a mode changed on disk: differs, rewritten with the spec's mode, reload asked", async () => {
    await fetch();
    await chmod(join(out, "password"), 0o440);
    const result = await runRefresh(options({ onChange: { action: "reload", units: ["nginx.service"] } }));
    expect(result.differences).toEqual([{ name: "password", path: join(out, "password"), reason: "mode 0440, should be 0400" }]);
    expect((await stat(join(out, "password"))).mode & 0o7777).toBe(0o400);
    expect(calls).toEqual([{ action: "reload", units: ["nginx.service"] }]);
  });

  it("a changed file without --restart/--reload: rewritten, nothing notified", async () => {
    await fetch();
    await writeFile(join(out, "password"), "tampered");
    const result = await runRefresh(options({ onChange: undefined }));
    expect(result).toMatchObject({ outcome: "changed", notified: [] });
    expect(await readFile(join(out, "password"), "utf8")).toBe(values.password);
    expect(calls).toEqual([]);
  });

  it("a failing resolve (a reference gone: 69; the vault unreadable: 78) leaves every file as it was and restarts nothing", async () => {
    await fetch();
    const before = await snapshot();
    await writeVault(dir, { Lab: { App: { fields: { password: "pw-v2" } } } });
    await expect(runRefresh(options())).rejects.toMatchObject({ exitCode: 69 });
    await rm(vaultFile);
    await expect(runRefresh(options())).rejects.toMatchObject({ exitCode: 78 });
    expect(await snapshot()).toEqual(before);
    expect(calls).toEqual([]);
  });

  it("a failing systemctl after the rewrite: the error says the files are written, exit class kept", async () => {
    await fetch();
    await vault({ password: "pw-v2" });
    const failure = new HomelabError(
      75,
      "systemctl try-restart --job-mode=ignore-requirements app.service failed (exit 1); the new files are written",
    );
    await expect(runRefresh(options({ systemctl: () => Promise.reject(failure) }))).rejects.toBe(failure);
    expect(await readFile(join(out, "password"), "utf8")).toBe("pw-v2");
  });

  it("the service stops while the refresh runs (its directory removed before the write): nothing written, nothing restarted, no failure", async () => {
    await fetch();
    await vault({ password: "pw-v2" });
    // The compare has logged what changed; the write comes next. Stop the "service" now.
    const stopping: Logger = { ...log, info: (m) => (m.includes("changed:") ? rmSync(out, { recursive: true }) : log.info(m)) };
    const result = await runRefresh(options({ log: stopping }));
    expect(result.outcome).toBe("not-running");
    await expect(stat(out)).rejects.toMatchObject({ code: "ENOENT" });
    expect(calls).toEqual([]);
    expect(lines.join("\n")).toMatch(/was removed or replaced while refreshing \(the service stopped or restarted meanwhile/);
  });

  it("the service restarts while the refresh runs (a new directory): no second restart on top of it", async () => {
    await fetch();
    await vault({ password: "pw-v2" });
    const restarting: Logger = {
      ...log,
      info: (m) => {
        if (m.includes("changed:")) {
          rmSync(out, { recursive: true });
          mkdirSync(out, { mode: 0o700 });
        }
        log.info(m);
      },
    };
    const result = await runRefresh(options({ log: restarting }));
    expect(result).toMatchObject({ outcome: "changed", notified: [] });
    expect(calls).toEqual([]);
    expect(lines.join("\n")).toMatch(/was replaced while refreshing .*; nothing restarted/);
  });

  it("the CLI: --restart and --reload together, or a unit name that is not one, are usage errors (64) before anything runs", async () => {
    await fetch();
    const both = await runCli(["refresh", "--spec", specFile, "--restart", "a.service", "--reload", "b.service"]);
    expect(both.exitCode).toBe(64);
    expect(both.stderr).toMatch(/mutually exclusive/);
    const bad = await runCli(["refresh", "--spec", specFile, "--restart", "a.service; reboot"]);
    expect(bad.exitCode).toBe(64);
    expect(bad.stderr).toMatch(/--restart must be a systemd unit name/);
  });
});
