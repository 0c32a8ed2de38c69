// Security issue 13, item 9: an empty --tags filter is refused instead of meaning "everything".
import { execFileSync } from "node:child_process";
import { existsSync } from "node:fs";
import { mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { runCli } from "../helpers.js";

describe("user --cleanup with an empty --tags", () => {
  let dir: string;
  let mapfile: string;
  const files = ["tagged-a", "tagged-b", "untagged"];

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), "hs-tags-empty-"));
    const me = execFileSync("id", ["-un"], { encoding: "utf8" }).trim();
    mapfile = join(dir, "mapfile");
    await writeFile(
      mapfile,
      [
        `${me} op://V/I/a ${join(dir, "out", "tagged-a")} a`,
        `${me} op://V/I/b ${join(dir, "out", "tagged-b")} b`,
        `${me} op://V/I/c ${join(dir, "out", "untagged")}`,
        "",
      ].join("\n"),
      { mode: 0o644 },
    );
    await mkdir(join(dir, "out"), { mode: 0o700 });
  });
  afterAll(() => rm(dir, { recursive: true, force: true }));

  it.each([
    ["--tags ''", ["--tags", ""]],
    ["--tags ,", ["--tags", ","]],
    ["--tags=' , '", ["--tags= , "]],
  ])("%s is a usage error (64) and removes nothing", async (_name, tagArgs) => {
    for (const name of files) await writeFile(join(dir, "out", name), "previous", { mode: 0o600 });
    const result = await runCli(["user", "--cleanup", ...tagArgs, "--map-file-path", mapfile, "--config-dir", dir]);
    expect(result.stderr).toContain("--tags names no tag");
    expect(result.exitCode).toBe(64);
    for (const name of files) expect(existsSync(join(dir, "out", name)), name).toBe(true);
  });

  it("a real tag still selects only its entries", async () => {
    for (const name of files) await writeFile(join(dir, "out", name), "previous", { mode: 0o600 });
    const result = await runCli(["user", "--cleanup", "--tags", "a", "--map-file-path", mapfile, "--config-dir", dir]);
    expect(result.exitCode).toBe(0);
    expect(files.map((name) => existsSync(join(dir, "out", name)))).toEqual([false, true, true]);
  });
});
