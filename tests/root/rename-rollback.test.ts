// Security issue 13, item 5: when a later target cannot be replaced, the earlier ones keep
// their old files (same inode, same content): all or nothing holds through the rename phase.
import { execFileSync } from "node:child_process";
import { chmodSync, lstatSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { execa } from "execa";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { hasCommand, rootSkipReason } from "./root-env.js";

const cli = join(import.meta.dirname, "../../helper/dist/cli.js");
const skip = rootSkipReason(["chattr"]);

describe.skipIf(skip !== undefined)("fetch: a target that cannot be replaced", () => {
  let work: string;
  let immutable: string | undefined;

  beforeAll(() => {
    work = mkdtempSync(join(tmpdir(), "hs-rollback-"));
    chmodSync(work, 0o755);
  });
  afterAll(() => {
    if (immutable && hasCommand("chattr")) execFileSync("chattr", ["-i", immutable]);
    rmSync(work, { recursive: true, force: true });
  });

  it("an immutable later target (chattr +i): exit 73, earlier targets untouched, no temp or backup files left", async () => {
    const out = join(work, "app-secrets");
    const vaultFile = join(work, "vault.json");
    const writeVault = (suffix: string) =>
      writeFileSync(
        vaultFile,
        JSON.stringify({ vaults: { V: { items: { I: { fields: { a: `a-${suffix}`, b: `b-${suffix}`, c: `c-${suffix}` } } } } } }),
        { mode: 0o600 },
      );
    const specFile = join(work, "spec.json");
    // Written (and renamed) in this order: a, b, c.
    writeFileSync(
      specFile,
      JSON.stringify({
        version: 1,
        name: "app",
        outputDir: out,
        source: { type: "file", path: vaultFile },
        files: { a: { ref: "op://V/I/a" }, b: { ref: "op://V/I/b" }, c: { ref: "op://V/I/c" } },
      }),
    );
    writeVault("old");
    const first = await execa("node", [cli, "fetch", "--spec", specFile], { reject: false });
    expect(first.exitCode, first.stderr).toBe(0);
    const before = Object.fromEntries(["a", "b", "c"].map((n) => [n, lstatSync(join(out, n)).ino]));

    immutable = join(out, "c");
    execFileSync("chattr", ["+i", immutable]);
    writeVault("new");
    const result = await execa("node", [cli, "fetch", "--spec", specFile], { reject: false });
    expect(result.stderr).toMatch(/cannot replace .*\/c: permission denied/);
    expect(result.exitCode).toBe(73);
    for (const name of ["a", "b", "c"]) {
      expect(readFileSync(join(out, name), "utf8"), name).toBe(`${name}-old`);
      expect(lstatSync(join(out, name)).ino, name).toBe(before[name]);
    }
    expect(readdirSync(out).sort()).toEqual(["a", "b", "c"]);

    execFileSync("chattr", ["-i", immutable]);
    immutable = undefined;
    const again = await execa("node", [cli, "fetch", "--spec", specFile], { reject: false });
    expect(again.exitCode, again.stderr).toBe(0);
    expect(["a", "b", "c"].map((n) => readFileSync(join(out, n), "utf8"))).toEqual(["a-new", "b-new", "c-new"]);
    expect(readdirSync(out).sort()).toEqual(["a", "b", "c"]);
  });
});
