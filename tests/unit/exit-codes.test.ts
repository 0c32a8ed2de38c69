/**
 * The CLI end to end as real processes: exit codes (sysexits), messages, and logging.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { existsSync } from "node:fs";
import { chmod, mkdir, readFile, symlink, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { makeSpec, makeTempDir, removeTempDirs, repoRoot, runCli, writeSpec, writeVault, type RunResult } from "../helpers.js";

const demoSpec = join(repoRoot, "examples", "demo", "spec.json");
const demoVault = join(repoRoot, "examples", "demo", "vault.json");

/** Every stderr of every run in this file; checked for secret values at the end. */
const allStderr: string[] = [];
async function run(args: string[], options: Parameters<typeof runCli>[1] = {}): Promise<RunResult> {
  const result = await runCli(args, options);
  allStderr.push(result.stderr);
  return result;
}

let dir: string;
let vault: string;
beforeAll(async () => {
  dir = await makeTempDir("hs-exit-");
  vault = await writeVault(dir, { Homelab: { Item: { fields: { password: "unit-test-value-7f3a" } } } });
});
afterAll(removeTempDirs);

/** The demo vault's strings and this file's test values. */
async function secretValues(): Promise<string[]> {
  const strings: string[] = [];
  const walk = (node: unknown) => {
    if (typeof node === "string") strings.push(node);
    else if (node && typeof node === "object") Object.values(node).forEach(walk);
  };
  walk(JSON.parse(await readFile(demoVault, "utf8")));
  return [...strings, "unit-test-value-7f3a", "fine-value-1234"];
}

// After every test of the file, in whatever order they ran (or whichever -t picked): no
// value in the stderr of any run.
afterAll(async () => {
  expect(allStderr.length).toBeGreaterThan(0);
  const stderr = allStderr.join("\n");
  for (const secret of await secretValues()) expect(stderr, `value "${secret}" leaked to stderr`).not.toContain(secret);
});

async function fresh(name: string) {
  const d = join(dir, name);
  await mkdir(d);
  return d;
}

describe("usage errors exit 64", () => {
  it.each([
    ["an unknown command", ["frobnicate"], /Unknown argument: frobnicate/],
    ["no command", [], /name a command/],
    ["fetch without --spec", ["fetch"], /Missing required argument: spec/],
    ["an unknown flag", ["fetch", "--spec", "x.json", "--bogus-flag"], /Unknown arguments?: bogus-flag/],
    ["check without --spec or --mapfile", ["check"], /check needs --spec FILE or --mapfile FILE/],
    ["a non-numeric --deadline", ["fetch", "--spec", "x.json", "--deadline", "soon"], /--deadline must be a number of seconds/],
    ["a zero --deadline", ["fetch", "--spec", "x.json", "--deadline", "0"], /--deadline must be a number of seconds/],
    ["a --deadline that overflows a timer", ["fetch", "--spec", "x.json", "--deadline", "1e9"], /--deadline must be a number of seconds/],
    ["read with a bad --mode", ["read", "op://V/I/f", "--mode", "999"], /--mode must be an octal mode/],
    ["--source file without a path", ["read", "op://V/I/f", "--source", "file"], /--source file needs a path/],
    ["an unknown --source", ["read", "op://V/I/f", "--source", "vault"], /unknown source "vault"/],
  ])("%s", async (_what, args, why) => {
    const result = await run(args);
    expect(result.exitCode).toBe(64);
    expect(result.stderr).toMatch(why);
    expect(result.stderr).toMatch(/^homelab-secrets: error: /);
    expect(result.stdout).toBe("");
  });
});

describe("bad data exits 65", () => {
  it("a malformed spec names file:line on stderr (fetch and check)", async () => {
    const d = await fresh("malformed");
    const spec = await writeSpec(
      d,
      `{\n  "version": 1,\n  "name": "x",\n  "outputDir": "${d}/out",\n  "files": {\n    "a": { "ref": "op://V/I" }\n  }\n}\n`,
    );
    // check is offline: it takes no --source.
    for (const args of [
      ["fetch", "--spec", spec, "--source", `file:${vault}`],
      ["check", "--spec", spec],
    ]) {
      const result = await run(args);
      expect(result.exitCode).toBe(65);
      expect(result.stderr).toContain(`${spec}:6: files.a.ref: invalid secret reference "op://V/I"`);
    }
    expect(existsSync(join(d, "out"))).toBe(false);
  });

  it("invalid JSON names file:line", async () => {
    const d = await fresh("badjson");
    const spec = await writeSpec(d, `{\n  "version": 1,\n  "name": "x",,\n}`);
    const result = await run(["check", "--spec", spec]);
    expect(result.exitCode).toBe(65);
    expect(result.stderr).toContain(`${spec}:3: invalid JSON`);
  });

  it("read with a bad reference", async () => {
    const result = await run(["read", "op://V/I", "--source", `file:${vault}`]);
    expect(result.exitCode).toBe(65);
    expect(result.stderr).toMatch(/invalid secret reference "op:\/\/V\/I"/);
  });

  it("a value an env file cannot hold, naming the variable but not the value; nothing is written", async () => {
    const d = await fresh("nul");
    const v = await writeVault(d, { V: { I: { fields: { ok: "fine-value-1234", nul: "nul-value-\u0000-secret" } } } });
    const spec = await writeSpec(
      d,
      makeSpec(join(d, "out"), { files: { a: { ref: "op://V/I/ok" } }, envFiles: { "e.env": { vars: { BAD_VAR: "op://V/I/nul" } } } }),
    );
    const result = await run(["fetch", "--spec", spec, "--source", `file:${v}`]);
    expect(result.exitCode).toBe(65);
    expect(result.stderr).toMatch(/e\.env: value of BAD_VAR contains a NUL byte/);
    expect(result.stderr).not.toContain("nul-value");
    expect(existsSync(join(d, "out"))).toBe(false);
  });
});

describe("not found exits 69", () => {
  it("a reference missing from a file vault is named, and nothing is written", async () => {
    const d = await fresh("missing");
    const spec = await writeSpec(
      d,
      makeSpec(join(d, "out"), {
        files: { a: { ref: "op://Homelab/Item/password" }, b: { ref: "op://Homelab/Item/nope" }, c: { ref: "op://Homelab/Gone/x" } },
      }),
    );
    const result = await run(["fetch", "--spec", spec, "--source", `file:${vault}`]);
    expect(result.exitCode).toBe(69);
    expect(result.stderr).toContain("op://Homelab/Item/nope");
    expect(result.stderr).toContain("op://Homelab/Gone/x");
    expect(result.stderr).not.toContain("op://Homelab/Item/password");
    expect(existsSync(join(d, "out"))).toBe(false);
  });

  it("a failed run leaves the previous files exactly as they were", async () => {
    const d = await fresh("keep");
    const out = join(d, "out");
    const good = await writeSpec(d, makeSpec(out), "good.json");
    expect((await run(["fetch", "--spec", good, "--source", `file:${vault}`])).exitCode).toBe(0);
    expect(await readFile(join(out, "secret"), "utf8")).toBe("unit-test-value-7f3a");
    const bad = await writeSpec(
      d,
      makeSpec(out, { files: { secret: { ref: "op://Homelab/Item/password" }, other: { ref: "op://Homelab/Item/nope" } } }),
      "bad.json",
    );
    expect((await run(["fetch", "--spec", bad, "--source", `file:${vault}`])).exitCode).toBe(69);
    expect(await readFile(join(out, "secret"), "utf8")).toBe("unit-test-value-7f3a");
    expect(existsSync(join(out, "other"))).toBe(false);
  });
});

describe("cannot write exits 73", () => {
  it("outputDir below a regular file", async () => {
    const d = await fresh("unwritable");
    await writeFile(join(d, "plain-file"), "x");
    const spec = await writeSpec(d, makeSpec(join(d, "plain-file", "out")));
    const result = await run(["fetch", "--spec", spec, "--source", `file:${vault}`]);
    expect(result.exitCode).toBe(73);
    expect(result.stderr).toContain(join(d, "plain-file"));
    expect(result.stderr).toMatch(/not a directory/);
  });

  it("a directory where an output file should go", async () => {
    const d = await fresh("dirtarget");
    await mkdir(join(d, "out", "secret"), { recursive: true });
    const spec = await writeSpec(d, makeSpec(join(d, "out")));
    const result = await run(["fetch", "--spec", spec, "--source", `file:${vault}`]);
    expect(result.exitCode).toBe(73);
    expect(result.stderr).toMatch(/a directory is in the way/);
  });
});

describe("configuration errors exit 78", () => {
  it("no token: onepassword source with CREDENTIALS_DIRECTORY unset", async () => {
    const d = await fresh("notoken");
    const spec = await writeSpec(d, makeSpec(join(d, "out")));
    const result = await run(["fetch", "--spec", spec], { env: { CREDENTIALS_DIRECTORY: undefined } });
    expect(result.exitCode).toBe(78);
    expect(result.stderr).toMatch(/CREDENTIALS_DIRECTORY is not set/);
    expect(result.stderr).toMatch(/LoadCredential=op-token/);
  });

  it("a token file readable by others (0644)", async () => {
    const d = await fresh("loosetoken");
    const token = join(d, "token");
    await writeFile(token, "ops_abcdefabcdefabcdef\n");
    await chmod(token, 0o644);
    const spec = await writeSpec(d, makeSpec(join(d, "out")));
    const result = await run(["fetch", "--spec", spec, "--token-file", token]);
    expect(result.exitCode).toBe(78);
    expect(result.stderr).toMatch(/readable or writable by group or others \(mode 644\)/);
    expect(result.stderr).not.toContain("ops_abcdef");
  });

  it("a missing token credential file", async () => {
    const d = await fresh("nocred");
    const credentials = await fresh("nocred/credentials");
    const spec = await writeSpec(d, makeSpec(join(d, "out")));
    const result = await run(["fetch", "--spec", spec], { env: { CREDENTIALS_DIRECTORY: credentials } });
    expect(result.exitCode).toBe(78);
    expect(result.stderr).toContain(`cannot read token ${join(credentials, "op-token")}: ENOENT`);
  });

  it("a named --token-credential that is missing", async () => {
    const d = await fresh("othercred");
    const credentials = await fresh("othercred/credentials");
    await writeFile(join(credentials, "op-token"), "ops_x", { mode: 0o400 });
    const spec = await writeSpec(d, makeSpec(join(d, "out")));
    const result = await run(["fetch", "--spec", spec, "--token-credential", "other-token"], {
      env: { CREDENTIALS_DIRECTORY: credentials },
    });
    expect(result.exitCode).toBe(78);
    expect(result.stderr).toContain(join(credentials, "other-token"));
  });

  it("an empty token file and a symlinked token file", async () => {
    const d = await fresh("emptytoken");
    const empty = join(d, "empty");
    await writeFile(empty, "\n", { mode: 0o600 });
    const spec = await writeSpec(d, makeSpec(join(d, "out")));
    const first = await run(["fetch", "--spec", spec, "--token-file", empty]);
    expect(first.exitCode).toBe(78);
    expect(first.stderr).toMatch(/is empty/);
    const link = join(d, "link");
    await symlink(empty, link);
    const second = await run(["fetch", "--spec", spec, "--token-file", link]);
    expect(second.exitCode).toBe(78);
    expect(second.stderr).toMatch(/symlink/);
  });

  it("a missing spec file", async () => {
    const result = await run(["fetch", "--spec", join(dir, "does-not-exist.json")]);
    expect(result.exitCode).toBe(78);
    expect(result.stderr).toMatch(/cannot read spec .*does-not-exist\.json: ENOENT/);
  });
});

describe("internal errors (bugs) exit 70", () => {
  /** A preload that plants a bug: fs.existsSync throws a TypeError for one path. */
  async function plantedBug(path: string): Promise<string[]> {
    const preload = join(dir, `bug-${Math.random().toString(36).slice(2)}.cjs`);
    await writeFile(
      preload,
      `const fs = require("node:fs");
const original = fs.existsSync;
fs.existsSync = (p) => { if (p === ${JSON.stringify(path)}) throw new TypeError("planted bug"); return original(p); };
require("node:module").syncBuiltinESMExports();
`,
    );
    return ["--require", preload];
  }

  it("doctor: an unexpected error is reported as internal and exits 70", async () => {
    const config = await fresh("doctor-bug");
    const result = await run(["doctor", "--config-dir", config], { nodeArgs: await plantedBug("/run/wrappers/bin/homelab-secrets-user") });
    expect(result.stderr).toMatch(/^homelab-secrets: error: internal error: TypeError: planted bug/m);
    expect(result.exitCode).toBe(70);
  });
});

describe("--version and --help", () => {
  it("--version prints package.json's version", async () => {
    const { version } = JSON.parse(await readFile(join(repoRoot, "package.json"), "utf8")) as { version: string };
    const result = await run(["--version"]);
    expect(result.exitCode).toBe(0);
    expect(result.stdout).toBe(`${version}\n`);
  });

  it("--help lists the commands, and --help works for every one of them", async () => {
    const main = await run(["--help"]);
    expect(main.exitCode).toBe(0);
    const commands = [...main.stdout.matchAll(/^\s+homelab-secrets (\w+)/gm)].map((m) => m[1]!);
    expect(commands).toEqual(expect.arrayContaining(["fetch", "read", "check", "cleanup", "user", "doctor", "demo"]));
    // Every command that talks to a backend is bounded by a deadline; doctor only reads local files, demo its bundled vault.
    const resolving = new Set(["fetch", "read", "user", "agent"]);
    const results = await Promise.all(commands.map((command) => run([command, "--help"])));
    for (const [i, result] of results.entries()) {
      expect(result.exitCode, commands[i]).toBe(0);
      expect(result.stdout).toContain(`homelab-secrets ${commands[i]}`);
      if (resolving.has(commands[i]!)) expect(result.stdout, commands[i]).toContain("--deadline");
      expect(result.stderr).toBe("");
    }
  });
});

describe("logging", () => {
  it("with JOURNAL_STREAM, every stderr line carries an sd-daemon priority", async () => {
    const d = await fresh("journal");
    const ok = await writeSpec(d, makeSpec(join(d, "out")), "ok.json");
    const good = await run(["fetch", "--spec", ok, "--source", `file:${vault}`, "--verbose"], { env: { JOURNAL_STREAM: "8:12345" } });
    expect(good.exitCode).toBe(0);
    const goodLines = good.stderr.trimEnd().split("\n");
    expect(goodLines.length).toBeGreaterThanOrEqual(2);
    for (const line of goodLines) expect(line).toMatch(/^<[67]>\S/);
    expect(goodLines.some((l) => l.startsWith("<6>") && l.includes("wrote 1 file(s)"))).toBe(true);
    expect(goodLines.some((l) => l.startsWith("<7>") && l.includes("op://Homelab/Item/password"))).toBe(true);
    expect(good.stderr).not.toContain("homelab-secrets:");

    const bad = await writeSpec(d, makeSpec(join(d, "out"), { files: { x: { ref: "op://Homelab/Item/nope" } } }), "bad.json");
    const failed = await run(["fetch", "--spec", bad, "--source", `file:${vault}`], { env: { JOURNAL_STREAM: "8:12345" } });
    expect(failed.exitCode).toBe(69);
    expect(failed.stderr).toMatch(/^<3>not found in .*op:\/\/Homelab\/Item\/nope\n$/);

    const usage = await run(["fetch"], { env: { JOURNAL_STREAM: "8:12345" } });
    expect(usage.exitCode).toBe(64);
    for (const line of usage.stderr.trimEnd().split("\n")) expect(line).toMatch(/^<[36]>/);
  });

  it("without JOURNAL_STREAM, lines start with `homelab-secrets: `", async () => {
    const d = await fresh("plainlog");
    const ok = await writeSpec(d, makeSpec(join(d, "out")));
    const good = await run(["fetch", "--spec", ok, "--source", `file:${vault}`]);
    expect(good.exitCode).toBe(0);
    expect(good.stderr).toMatch(/^homelab-secrets: test: wrote 1 file\(s\) to \S+ from 1 reference\(s\) via file\n$/);
    expect(good.stderr).toContain(join(d, "out"));
    const bad = await run(["check", "--spec", join(d, "nope.json")]);
    expect(bad.stderr).toMatch(/^homelab-secrets: error: cannot read spec/);
    expect(bad.stderr).not.toMatch(/^</m);
  });

  it("--verbose adds debug lines that list references, never values", async () => {
    const d = await fresh("verbose");
    const quiet = await run(["fetch", "--spec", demoSpec, "--source", `file:${demoVault}`, "--output-dir", join(d, "q")]);
    const loud = await run(["fetch", "--spec", demoSpec, "--source", `file:${demoVault}`, "--output-dir", join(d, "v"), "--verbose"]);
    expect(quiet.exitCode).toBe(0);
    expect(loud.exitCode).toBe(0);
    expect(quiet.stderr).not.toMatch(/debug:/);
    const debug = loud.stderr.split("\n").filter((l) => l.startsWith("homelab-secrets: debug: "));
    expect(debug.length).toBeGreaterThan(quiet.stderr.split("\n").length);
    const resolving = debug.find((l) => l.includes("resolving"));
    for (const ref of [
      "op://Homelab/Transmission/password",
      "op://Homelab/Backup/one-time?attribute=otp",
      "op://Homelab/Grafana/SMTP/password",
    ]) {
      expect(resolving).toContain(ref);
    }
    // The values really were written, so they were in the process.
    expect(await readFile(join(d, "v", "rpc-password"), "utf8")).toBe("correct horse battery staple");
  });

  it("the demo's values never appear in the stderr of a verbose run of every command that touches values", async () => {
    const d = await fresh("demo-values");
    // Every command that touches values, verbose, with JOURNAL_STREAM too.
    const own = [
      await run(["fetch", "--spec", demoSpec, "--source", `file:${demoVault}`, "--output-dir", join(d, "a"), "--verbose"], {
        env: { JOURNAL_STREAM: "1:1" },
      }),
      await run(["read", "op://Homelab/Grafana/admin-password", "--source", `file:${demoVault}`, "--verbose"]),
      await run(["read", "op://Homelab/Grafana/admin-password", "--source", `file:${demoVault}`, "--out", join(d, "r"), "--verbose"]),
      await run(["demo", "--verbose", "--output-dir", join(d, "demo")]),
    ];
    const secrets = await secretValues();
    expect(secrets.length).toBeGreaterThanOrEqual(7);
    expect(own.map((r) => r.exitCode)).toEqual([0, 0, 0, 0]);
    const stderr = own.map((r) => r.stderr).join("\n");
    for (const secret of secrets) expect(stderr, `value "${secret}" leaked to stderr`).not.toContain(secret);
  });
});
