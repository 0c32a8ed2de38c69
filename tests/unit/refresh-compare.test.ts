// The refresh's compare step: what is on disk against what a fetch would write now — bytes,
// mode and owner, never following a link. Real files in a temp dir; no waits.
import { execFileSync } from "node:child_process";
import { chmod, chown, mkdir, symlink, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { afterAll, beforeEach, describe, expect, it } from "vitest";
import { compareWithDisk } from "../../helper/src/refresh/compare.js";
import { parseUnitName, systemctlArgs } from "../../helper/src/refresh/systemctl.js";
import type { FileToWrite } from "../../helper/src/write.js";
import { makeTempDir, removeTempDirs } from "../helpers.js";

const self = { uid: process.geteuid!() };
const isRoot = self.uid === 0;
let dir: string;
beforeEach(async () => {
  dir = await makeTempDir("hs-refresh-compare-");
});
afterAll(removeTempDirs);

const want = (name: string, content: string, mode = 0o400, owner?: FileToWrite["owner"]): FileToWrite => ({
  path: join(dir, name),
  content: Buffer.from(content, "utf8"),
  mode,
  ...(owner ? { owner } : {}),
});
const put = async (name: string, content: string, mode = 0o400) => {
  await writeFile(join(dir, name), content);
  await chmod(join(dir, name), mode);
};

describe("compareWithDisk", () => {
  it("identical bytes, mode and owner: no difference", async () => {
    await put("a", "value-1");
    await put("b", "", 0o440);
    expect(await compareWithDisk([want("a", "value-1"), want("b", "", 0o440)], self)).toEqual([]);
  });

  it("same bytes, different mode: differs, naming both modes", async () => {
    await put("a", "value-1", 0o440);
    expect(await compareWithDisk([want("a", "value-1", 0o400)], self)).toEqual([
      { name: "a", path: join(dir, "a"), reason: "mode 0440, should be 0400" },
    ]);
  });

  it("same size, one byte different: differs as content, without the value in the reason", async () => {
    await put("a", "value-1");
    const [d] = await compareWithDisk([want("a", "value-2")], self);
    expect(d).toEqual({ name: "a", path: join(dir, "a"), reason: "content" });
  });

  it("a different length, a trailing newline, other bytes of the same text (NFC vs NFD): each differs", async () => {
    await put("a", "value");
    await put("b", "value\n");
    await put("c", "\u00e9");
    const diffs = await compareWithDisk([want("a", "value-longer"), want("b", "value"), want("c", "e\u0301")], self);
    expect(diffs.map((d) => [d.name, d.reason])).toEqual([
      ["a", "content"],
      ["b", "content"],
      ["c", "content"],
    ]);
  });

  it("a missing file differs; the others are still compared", async () => {
    await put("a", "x");
    const diffs = await compareWithDisk([want("a", "x"), want("gone", "y")], self);
    expect(diffs.map((d) => [d.name, d.reason])).toEqual([["gone", "missing"]]);
  });

  it("a symlink to a file with the right content differs and is not followed", async () => {
    await put("real", "value-1");
    await symlink(join(dir, "real"), join(dir, "a"));
    expect((await compareWithDisk([want("a", "value-1")], self))[0]?.reason).toBe("a symlink");
  });

  it("a FIFO or a directory at the path differs at once (no hang, no read)", async () => {
    execFileSync("mkfifo", [join(dir, "fifo")]);
    await chmod(join(dir, "fifo"), 0o400);
    await mkdir(join(dir, "d"));
    const diffs = await compareWithDisk([want("fifo", "x"), want("d", "x", 0o700)], self);
    expect(diffs.map((d) => [d.name, d.reason])).toEqual([
      ["fifo", "not a regular file"],
      ["d", "not a regular file"],
    ]);
  });

  it("an output without an owner must belong to whoever compares (fetch chowns nothing then)", async () => {
    await put("a", "v");
    expect(await compareWithDisk([want("a", "v")], { uid: self.uid + 1 })).toEqual([
      { name: "a", path: join(dir, "a"), reason: `owner uid ${self.uid}, should be ${self.uid + 1}` },
    ]);
  });

  it.skipIf(!isRoot)("same bytes and mode, another owner or group: differs (root: real chown)", async () => {
    await put("a", "v");
    await put("b", "v");
    await chown(join(dir, "a"), 4242, 4242);
    await chown(join(dir, "b"), 4242, 4343);
    const owner = { uid: 4242, gid: 4242 };
    expect(await compareWithDisk([want("a", "v", 0o400, owner)], self)).toEqual([]);
    expect(await compareWithDisk([want("b", "v", 0o400, owner)], self)).toEqual([
      { name: "b", path: join(dir, "b"), reason: "owner 4242:4343, should be 4242:4242" },
    ]);
  });
});

describe("the systemctl call", () => {
  it("try-restart / try-reload-or-restart with the job mode that leaves the secrets unit alone, then unit names only", () => {
    expect(systemctlArgs("restart", ["app.service"])).toEqual(["try-restart", "--job-mode=ignore-requirements", "app.service"]);
    expect(systemctlArgs("reload", ["nginx.service", "b@x.service"])).toEqual([
      "try-reload-or-restart",
      "--job-mode=ignore-requirements",
      "nginx.service",
      "b@x.service",
    ]);
  });

  it("unit names that could be read as flags or are not unit names are refused (64)", () => {
    expect(parseUnitName("app.service", "--restart")).toBe("app.service");
    expect(parseUnitName("getty@tty1.service", "--restart")).toBe("getty@tty1.service");
    for (const bad of ["-x", "--now", "a b", "a/b", "", "x".repeat(256), "a;b"]) {
      expect(() => parseUnitName(bad, "--restart"), bad).toThrow(expect.objectContaining({ exitCode: 64 }));
    }
  });
});
