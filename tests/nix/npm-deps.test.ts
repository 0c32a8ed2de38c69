// Nix packaging without registry URLs (nix/npm-deps.nix): evaluated against the real
// package-lock.json, every npm package Nix would fetch must be a fixed-output `npm pack` of
// exactly the lock's name@version, hashed with the lock's sha512 integrity — and the runtime
// set must be the one npm itself installs for production.
import { execFileSync } from "node:child_process";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { findNixInstantiate, findNixpkgsLib, inCI, readOnlyStore, repoRoot } from "./nix-env.js";

interface LockEntry {
  name?: string;
  version?: string;
  integrity?: string;
  dev?: boolean;
  optional?: boolean;
  link?: boolean;
}
interface Evaluated {
  runtimeKeys: string[];
  buildKeys: string[];
  fetches: Record<string, { name: string; pkgSpec: string; outputHash: string; outputHashMode: string; buildCommand: string }>;
  unpackRuntime: string;
}

const nix = findNixInstantiate();
const lib = findNixpkgsLib();
const why = nix === undefined ? "nix-instantiate not found (apt-get install nix-bin)" : lib.why;
if (why && inCI) {
  describe("nix: npm packaging", () => {
    it("has its prerequisites (CI=true)", () => {
      throw new Error(`${why}; CI must run the Nix evaluation tests`);
    });
  });
}
if (why) console.warn(`\n*** SKIPPED tests/nix/npm-deps.test.ts: ${why} ***\n`);

describe.skipIf(why !== undefined)(why ? `nix: npm packaging (SKIPPED: ${why})` : "nix: npm packaging from the lockfile", () => {
  const lock = JSON.parse(readFileSync(join(repoRoot, "package-lock.json"), "utf8")) as { packages: Record<string, LockEntry> };
  const evaluated = (): Evaluated => {
    const out = execFileSync(
      nix!,
      [...readOnlyStore, "--eval", "--strict", "--json", "tests/nix/npm-deps-harness.nix", "--arg", "lib", `import ${lib.dir!}`],
      {
        cwd: repoRoot,
        encoding: "utf8",
        timeout: 60_000,
      },
    );
    return JSON.parse(out) as Evaluated;
  };
  const result = why ? undefined : evaluated();
  const nameOf = (key: string, entry: LockEntry) => entry.name ?? key.slice(key.lastIndexOf("node_modules/") + "node_modules/".length);

  it("installs at runtime exactly the packages npm installs for production", () => {
    const production = Object.entries(lock.packages)
      .filter(([key, entry]) => key !== "" && !entry.dev && !entry.link)
      .map(([key]) => key)
      .sort();
    expect([...result!.runtimeKeys].sort()).toEqual(production);
    expect(production.length).toBeGreaterThan(5);
  });

  it("builds with the runtime set plus TypeScript and its type packages, and nothing platform-specific", () => {
    expect(result!.buildKeys).toEqual(
      expect.arrayContaining([...result!.runtimeKeys, "node_modules/typescript", "node_modules/@types/node"]),
    );
    expect(result!.buildKeys.filter((k) => lock.packages[k]?.optional)).toEqual([]);
  });

  it("fetches every package as `npm pack name@version` with the lock's sha512 integrity as the fixed output hash", () => {
    for (const key of result!.buildKeys) {
      const entry = lock.packages[key]!;
      const fetch = result!.fetches[key]!;
      expect(fetch.pkgSpec, key).toBe(`${nameOf(key, entry)}@${entry.version}`);
      expect(fetch.outputHash, key).toBe(entry.integrity!.split(" ").find((h) => h.startsWith("sha512-")));
      expect(fetch.outputHashMode, key).toBe("flat");
      expect(fetch.buildCommand, key).toMatch(/npm pack "\$pkgSpec"/);
      expect(fetch.buildCommand, key).toMatch(/--ignore-scripts/);
    }
  });

  it("names no registry host: no URL in the fetches or the unpack script, no download URL in the lock", () => {
    expect(JSON.stringify(result).match(/.{0,60}https?:\/\/.{0,40}/g) ?? []).toEqual([]);
    expect(
      Object.entries(lock.packages)
        .filter(([, e]) => "resolved" in e)
        .map(([k]) => k),
    ).toEqual([]);
    // (The lock does carry packages' funding links; what must not be there is where tarballs come from.)
    expect(readFileSync(join(repoRoot, "package-lock.json"), "utf8")).not.toMatch(/https?:\/\/[^"\s]+\/-\/[^"\s]+\.tgz/);
  });

  it("unpacks each runtime package at its lock path", () => {
    for (const key of result!.runtimeKeys) expect(result!.unpackRuntime, key).toContain(`mkdir -p ${key}\n`);
  });
});
