// Security issue 13, item 9: fetch never re-owns or re-modes a directory it did not create
// (such as /etc), unless it is the unit's RuntimeDirectory= or plainly its own.
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
  writeFileSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { execa } from "execa";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createAccount, rootSkipReason, type TestAccount } from "./root-env.js";

const cli = join(import.meta.dirname, "../../helper/dist/cli.js");
const skip = rootSkipReason();

describe.skipIf(skip !== undefined)("fetch into an existing output directory", () => {
  let work: string;
  let svc: TestAccount;

  beforeAll(() => {
    work = mkdtempSync(join(tmpdir(), "hs-existing-"));
    chmodSync(work, 0o755);
    svc = createAccount();
  });
  afterAll(() => {
    svc?.remove();
    rmSync(work, { recursive: true, force: true });
  });

  const setup = (name: string, outputDir: string, dirMode = "0750") => {
    const vaultFile = join(work, `${name}.vault.json`);
    writeFileSync(vaultFile, JSON.stringify({ vaults: { Lab: { items: { App: { fields: { password: "pw" } } } } } }), { mode: 0o600 });
    const specFile = join(work, `${name}.spec.json`);
    const spec = {
      version: 1,
      name,
      outputDir,
      owner: svc.name,
      dirMode,
      source: { type: "file", path: vaultFile },
      files: { password: { ref: "op://Lab/App/password" } },
    };
    writeFileSync(specFile, JSON.stringify(spec));
    return specFile;
  };
  const fetch = (specFile: string, env: Record<string, string> = {}) =>
    execa("node", [cli, "fetch", "--spec", specFile], { reject: false, env: { JOURNAL_STREAM: "", RUNTIME_DIRECTORY: "", ...env } });
  const owner = (path: string) => {
    const stats = lstatSync(path);
    return [stats.uid, stats.gid, stats.mode & 0o7777];
  };

  it("refuses (78) to chown/chmod a directory like /etc that holds other files: untouched, nothing written", async () => {
    const etc = join(work, "etc");
    mkdirSync(etc, { mode: 0o755 });
    writeFileSync(join(etc, "passwd"), "root:x:0:0::/root:/bin/sh\n", { mode: 0o644 });
    const result = await fetch(setup("etc", etc));
    expect(result.stderr).toMatch(/refusing to change the owner or mode of .*etc: this run did not create it/);
    expect(result.exitCode).toBe(78);
    expect(owner(etc)).toEqual([0, 0, 0o755]);
    expect(readdirSync(etc)).toEqual(["passwd"]);
  });

  it("refuses an existing empty directory it did not create", async () => {
    const empty = join(work, "empty");
    mkdirSync(empty, { mode: 0o755 });
    const result = await fetch(setup("empty", empty));
    expect(result.exitCode).toBe(78);
    expect(owner(empty)).toEqual([0, 0, 0o755]);
  });

  it("takes over the unit's RuntimeDirectory= ($RUNTIME_DIRECTORY, as systemd sets it)", async () => {
    const runtime = join(work, "app-secrets");
    mkdirSync(runtime, { mode: 0o755 });
    const result = await fetch(setup("runtime", runtime), { RUNTIME_DIRECTORY: `${join(work, "other")}:${runtime}` });
    expect(result.exitCode).toBe(0);
    expect(owner(runtime)).toEqual([svc.uid, svc.gid, 0o750]);
    expect(readFileSync(join(runtime, "password"), "utf8")).toBe("pw");
  });

  it("creates a missing directory, refetches into it, and may change the mode of a directory holding only its outputs", async () => {
    const out = join(work, "fresh", "app-secrets");
    const specFile = setup("fresh", out);
    expect((await fetch(specFile)).exitCode).toBe(0);
    expect(owner(out)).toEqual([svc.uid, svc.gid, 0o750]);
    expect((await fetch(specFile)).exitCode).toBe(0);
    const result = await fetch(setup("fresh", out, "0700"));
    expect(result.exitCode).toBe(0);
    expect(owner(out)).toEqual([svc.uid, svc.gid, 0o700]);
  });

  it("an existing directory that already has the spec's owner and mode is used as it is", async () => {
    const ready = join(work, "ready");
    mkdirSync(ready, { mode: 0o750 });
    chownSync(ready, svc.uid, svc.gid);
    chmodSync(ready, 0o750);
    writeFileSync(join(ready, "unrelated"), "x");
    const result = await fetch(setup("ready", ready));
    expect(result.exitCode).toBe(0);
    expect(existsSync(join(ready, "password"))).toBe(true);
  });
});
