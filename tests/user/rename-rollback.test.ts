// Security issue 13, item 5, user mode: the writer's rename phase is all or nothing too.
// A later target in a sticky directory belongs to another user, so renaming over it fails
// (EPERM) although the caller may read and write it; the earlier target must be restored.
import { execFileSync } from "node:child_process";
import { chmodSync, chownSync, lstatSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, expect, it } from "vitest";
import { createHost, describeAsRoot, type Account, type Host } from "./harness.js";

const vault = { vaults: { V: { items: { A: { fields: { one: "new-1", two: "new-2" } } } } } };

describeAsRoot("user mode: a target that cannot be replaced", () => {
  let host: Host;
  let u0: Account;
  let u1: Account;

  beforeAll(async () => {
    host = await createHost({ users: 2, vault });
    [u0, u1] = host.users as [Account, Account];
  });
  const appendOnly: string[] = [];
  afterAll(async () => {
    for (const dir of appendOnly) execFileSync("chattr", ["-a", dir]);
    await host?.destroy();
  });

  it("exit 73; the earlier target keeps its old inode and content; nothing left behind", async () => {
    const shared = join(host.dir, "shared");
    mkdirSync(shared);
    chmodSync(shared, 0o1777);
    const first = join(shared, "first");
    const second = join(shared, "second");
    writeFileSync(first, "old-1", { mode: 0o600 });
    chownSync(first, u0.uid, u0.gid);
    // u1's file, which u0 may read and write (so it may also hard-link it) but not replace.
    writeFileSync(second, "old-2");
    chmodSync(second, 0o666);
    chownSync(second, u1.uid, u1.gid);
    const inode = lstatSync(first).ino;
    host.writeMapfile(`${u0.name} op://V/A/one ${first}\n${u0.name} op://V/A/two ${second}\n`);

    const result = await host.run(u0, []);
    expect(result.stderr).toMatch(new RegExp(`cannot replace .*second: it belongs to uid ${u1.uid} and .*shared is sticky`));
    expect(result.exitCode).toBe(73);
    expect(readFileSync(first, "utf8")).toBe("old-1");
    expect(lstatSync(first).ino).toBe(inode);
    expect(readFileSync(second, "utf8")).toBe("old-2");
    expect(readdirSync(shared).sort()).toEqual(["first", "second"]);
  });

  // Nothing tells beforehand that this rename will fail: the old file is linked, the temp
  // file created (an append-only directory takes new entries), only rename(2) is refused.
  it("a rename that fails after earlier ones succeeded puts the earlier targets back (old inode)", async () => {
    const mine = join(host.dir, `mine-${u0.name}`);
    const locked = join(host.dir, `locked-${u0.name}`);
    for (const dir of [mine, locked]) {
      mkdirSync(dir, { mode: 0o700 });
      chownSync(dir, u0.uid, u0.gid);
    }
    const first = join(mine, "first");
    const second = join(locked, "second");
    for (const [path, text] of [
      [first, "old-1"],
      [second, "old-2"],
    ] as const) {
      writeFileSync(path, text, { mode: 0o600 });
      chownSync(path, u0.uid, u0.gid);
    }
    const inode = lstatSync(first).ino;
    execFileSync("chattr", ["+a", locked]);
    appendOnly.push(locked);
    host.writeMapfile(`${u0.name} op://V/A/one ${first}\n${u0.name} op://V/A/two ${second}\n`);

    const result = await host.run(u0, []);
    expect(result.stderr).toMatch(/cannot replace .*second: permission denied .*the 1 file\(s\) already replaced were put back/);
    expect(result.exitCode).toBe(73);
    expect(readFileSync(first, "utf8")).toBe("old-1");
    expect(lstatSync(first).ino).toBe(inode);
    expect(readdirSync(mine)).toEqual(["first"]);
    expect(readFileSync(second, "utf8")).toBe("old-2");
  });
});
