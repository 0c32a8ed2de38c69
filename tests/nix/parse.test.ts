// Every .nix file in the repository parses (nix-instantiate --parse, Debian's nix-bin).
import { execFileSync } from "node:child_process";
import { readdirSync } from "node:fs";
import { join, relative } from "node:path";
import { describe, expect, it } from "vitest";
import { findNixInstantiate, inCI, readOnlyStore, repoRoot } from "./nix-env.js";

const SKIP_DIRS = new Set([".git", "node_modules", "result", "dist", "build", ".vitest-cache"]);

function nixFiles(dir: string): string[] {
  const found: string[] = [];
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    if (entry.isDirectory()) {
      if (SKIP_DIRS.has(entry.name) || entry.name.startsWith("result-")) continue;
      found.push(...nixFiles(join(dir, entry.name)));
    } else if (entry.isFile() && entry.name.endsWith(".nix")) {
      found.push(relative(repoRoot, join(dir, entry.name)));
    }
  }
  return found.sort();
}

const nix = findNixInstantiate();
const missing = nix === undefined;
const why = "nix-instantiate not found (apt-get install nix-bin)";

if (missing && inCI) {
  describe("nix: parse every .nix file", () => {
    it("needs nix-instantiate in CI", () => {
      throw new Error(`${why}; CI must run the Nix parse tests`);
    });
  });
} else {
  if (missing) console.warn(`SKIPPED tests/nix/parse.test.ts: ${why}`);
  describe.skipIf(missing)(missing ? `nix: parse every .nix file (SKIPPED: ${why})` : "nix: parse every .nix file", () => {
    const files = nixFiles(repoRoot);

    it("finds the project's Nix files", () => {
      for (const f of [
        "flake.nix",
        "nix/lib.nix",
        "nix/package.nix",
        "modules/default.nix",
        "examples/configuration.nix",
        "tests/e2e/configuration.nix",
      ]) {
        expect(files).toContain(f);
      }
    });

    it.each(files)("%s parses", (file) => {
      try {
        execFileSync(nix!, [...readOnlyStore, "--parse", file], { cwd: repoRoot, stdio: ["ignore", "ignore", "pipe"], encoding: "utf8" });
      } catch (error) {
        const e = error as { stderr?: string; message: string };
        throw new Error(`${file} does not parse:\n${e.stderr ?? e.message}`);
      }
    });
  });
}
