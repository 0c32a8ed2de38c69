// Every build of the SUID wrapper (npm's, the .deb's through build-wrapper.mjs, Nix's) treats
// warnings as errors: a warning in a setuid program is a bug to fix, not a log line.
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { cflags } from "../../helper/scripts/build-wrapper.mjs";

const repoRoot = join(import.meta.dirname, "../..");
const strict = ["-Wall", "-Wextra", "-Werror"];

describe("wrapper compiler flags", () => {
  it("build-wrapper.mjs (npm build, tests, .deb) compiles with -Wall -Wextra -Werror", () => {
    expect(cflags).toEqual(expect.arrayContaining(strict));
  });

  it("nix/package.nix compiles with -Wall -Wextra -Werror", () => {
    const nix = readFileSync(join(repoRoot, "nix/package.nix"), "utf8");
    const command = /\$CC ((?:[^\n]*\\\n)*[^\n]*)/.exec(nix)?.[1] ?? "";
    expect(command).toContain("homelab-secrets-user.c");
    const words = command.split(/[\s\\]+/);
    for (const flag of strict) expect(words, flag).toContain(flag);
  });
});
