// Security issue 13, item 9, through the wrapper: `--cleanup --tags "$UNSET"` removes nothing.
import { existsSync, mkdirSync, writeFileSync, chownSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, expect, it } from "vitest";
import { createHost, describeAsRoot, type Account, type Host } from "./harness.js";

describeAsRoot("wrapper: an empty --tags filter", () => {
  let host: Host;
  let u0: Account;

  beforeAll(async () => {
    host = await createHost({ users: 1 });
    [u0] = host.users as [Account];
    host.writeMapfile(`${u0.name} op://V/A/one a.txt web\n${u0.name} op://V/A/two b.txt\n`);
  });
  afterAll(async () => {
    await host?.destroy();
  });

  it.each([
    ["--tags=", ["--tags="]],
    ["--tags ,", ["--tags", ","]],
    ["-tags ''", ["-tags", ""]],
  ])("%s: 64 and every file stays", async (_name, tagArgs) => {
    const dir = host.secretsDir(u0);
    mkdirSync(dir, { recursive: true, mode: 0o700 });
    chownSync(dir, u0.uid, u0.gid);
    for (const name of ["a.txt", "b.txt"]) {
      writeFileSync(join(dir, name), "previous", { mode: 0o600 });
      chownSync(join(dir, name), u0.uid, u0.gid);
    }
    const result = await host.run(u0, ["--cleanup", ...tagArgs]);
    expect(result.stderr).toContain("--tags names no tag");
    expect(result.exitCode).toBe(64);
    expect(["a.txt", "b.txt"].map((name) => existsSync(join(dir, name)))).toEqual([true, true]);
  });
});
