// Shared discovery for the Nix test suites: the nix-instantiate binary and NIXPKGS_LIB.
import { execFileSync } from "node:child_process";
import { existsSync } from "node:fs";
import { delimiter, join, resolve } from "node:path";

export const repoRoot = resolve(import.meta.dirname ?? new URL(".", import.meta.url).pathname, "../..");

export const inCI = ["true", "1", "yes"].includes(String(process.env.CI ?? "").toLowerCase());

/** Absolute path of nix-instantiate (PATH, then Debian's /usr/bin), or undefined. */
export function findNixInstantiate(): string | undefined {
  const dirs = [...(process.env.PATH ?? "").split(delimiter), "/usr/bin", "/nix/var/nix/profiles/default/bin"];
  for (const dir of dirs) {
    if (!dir) continue;
    const candidate = join(dir, "nix-instantiate");
    if (existsSync(candidate)) return candidate;
  }
  return undefined;
}

/** The directory holding nixpkgs lib's default.nix, from NIXPKGS_LIB (a nixpkgs.lib or nixpkgs checkout). */
export function findNixpkgsLib(): { dir?: string; why?: string } {
  const root = process.env.NIXPKGS_LIB;
  if (!root) return { why: "NIXPKGS_LIB is not set (point it at a nixpkgs.lib or nixpkgs checkout)" };
  if (existsSync(join(root, "lib", "default.nix"))) return { dir: resolve(root, "lib") };
  if (existsSync(join(root, "default.nix"))) return { dir: resolve(root) };
  return { why: `NIXPKGS_LIB=${root} contains neither lib/default.nix nor default.nix` };
}

export interface EvalOptions {
  readWrite?: boolean;
  attr: string;
  /** Path (relative to the repo) of a configuration module, or a Nix expression. */
  configuration: string;
}

/** Evaluate tests/nix/eval-harness.nix and return its JSON. Throws with Nix's stderr on failure. */
export function evalHarness(nix: string, libDir: string, opts: EvalOptions): unknown {
  const args = [
    "--eval",
    "--strict",
    "--json",
    ...(opts.readWrite ? ["--read-write-mode"] : []),
    "tests/nix/eval-harness.nix",
    "--arg",
    "lib",
    `import ${libDir}`,
    "--arg",
    "configuration",
    opts.configuration,
    "-A",
    opts.attr,
  ];
  try {
    const out = execFileSync(nix, args, { cwd: repoRoot, encoding: "utf8", stdio: ["ignore", "pipe", "pipe"], timeout: 60_000 });
    return JSON.parse(out);
  } catch (error) {
    const e = error as { stderr?: string; message: string };
    throw new Error(`nix-instantiate ${opts.attr} failed:\n${e.stderr ?? e.message}`);
  }
}
