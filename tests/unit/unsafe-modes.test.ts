// Security issue 13, item 10: the CLI itself refuses modes that expose a secret, and warns
// about (or refuses) a vault or mapfile others can read (or write).
import { existsSync } from "node:fs";
import { chmod, mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { runCli } from "../helpers.js";

describe("unsafe modes through the CLI", () => {
  let dir: string;
  let vault: string;
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), "hs-modes-"));
    vault = join(dir, "vault.json");
    await writeFile(vault, JSON.stringify({ vaults: { V: { items: { I: { fields: { f: "value" } } } } } }), { mode: 0o600 });
  });
  afterAll(() => rm(dir, { recursive: true, force: true }));

  const spec = async (name: string, extra: Record<string, unknown>) => {
    const file = join(dir, `${name}.json`);
    await writeFile(
      file,
      JSON.stringify(
        {
          version: 1,
          name,
          outputDir: join(dir, name),
          source: { type: "file", path: vault },
          files: { secret: { ref: "op://V/I/f" } },
          ...extra,
        },
        null,
        2,
      ),
    );
    return file;
  };

  it.each([
    [
      "file mode 0666",
      { files: { secret: { ref: "op://V/I/f", mode: "0666" } } },
      /files\.secret\.mode: "0666" lets others access a secret/,
    ],
    [
      "file mode 0460",
      { files: { secret: { ref: "op://V/I/f", mode: "0460" } } },
      /files\.secret\.mode: "0460" lets the group write a secret/,
    ],
    ["dirMode 0755", { dirMode: "0755" }, /dirMode: "0755" lets others access/],
  ])("check and fetch refuse %s (65) and fetch writes nothing", async (name, extra, why) => {
    const file = await spec(name.replace(/\W/g, "-"), extra);
    const check = await runCli(["check", "--spec", file]);
    expect(check.stderr).toMatch(why);
    expect(check.exitCode).toBe(65);
    const fetch = await runCli(["fetch", "--spec", file]);
    expect(fetch.exitCode).toBe(65);
    expect(existsSync(join(dir, name.replace(/\W/g, "-")))).toBe(false);
  });

  it("read --out refuses --mode 0644 (64) before fetching anything", async () => {
    const out = join(dir, "read-out");
    const result = await runCli(["read", "op://V/I/f", "--source", `file:${vault}`, "--out", out, "--mode", "0644"]);
    expect(result.stderr).toMatch(/--mode "0644" lets others access a secret/);
    expect(result.exitCode).toBe(64);
    expect(existsSync(out)).toBe(false);
  });

  it("a vault others can read is a warning; one others can write is refused (78)", async () => {
    const file = await spec("vault-modes", {});
    await chmod(vault, 0o644);
    const readable = await runCli(["fetch", "--spec", file]);
    expect(readable.exitCode).toBe(0);
    expect(readable.stderr).toMatch(/warn: vault file .* is readable by others \(mode 0644\)/);
    await chmod(vault, 0o666);
    const writable = await runCli(["fetch", "--spec", file]);
    expect(writable.stderr).toMatch(/vault file .* is writable by others/);
    expect(writable.exitCode).toBe(78);
    await chmod(vault, 0o600);
    const quiet = await runCli(["fetch", "--spec", file]);
    expect(quiet.exitCode).toBe(0);
    expect(quiet.stderr).not.toMatch(/warn/);
  });

  it("check --mapfile warns about a mapfile others can read and refuses one others can write (78)", async () => {
    const mapfile = join(dir, "mapfile");
    await writeFile(mapfile, "alice op://V/I/f x\n", { mode: 0o644 });
    await chmod(mapfile, 0o644);
    const readable = await runCli(["check", "--mapfile", mapfile]);
    expect(readable.exitCode).toBe(0);
    expect(readable.stderr).toMatch(/warn: mapfile .* is readable by others/);
    await chmod(mapfile, 0o664);
    const writable = await runCli(["check", "--mapfile", mapfile]);
    expect(writable.exitCode).toBe(78);
    await chmod(mapfile, 0o640);
    const quiet = await runCli(["check", "--mapfile", mapfile]);
    expect([quiet.exitCode, quiet.stderr]).toEqual([0, ""]);
  });

  it("check warns about a plain-http Connect host off this host, not about loopback or https", async () => {
    const warnings: string[] = [];
    for (const host of [
      "http://connect.example.org:8080",
      "http://127.0.0.1:8080",
      "http://localhost:8080",
      "http://[::1]:8080",
      "https://connect.example.org",
    ]) {
      const file = await spec("connect-host", { source: { type: "connect", host } });
      const result = await runCli(["check", "--spec", file]);
      expect(result.exitCode, result.stderr).toBe(0);
      warnings.push(result.stderr);
    }
    expect(warnings[0]).toMatch(/warn: .*source\.host http:\/\/connect\.example\.org:8080 is plain http to another host/);
    expect(warnings.slice(1)).toEqual(["", "", "", ""]);
  });
});
