// Shared discovery for the Nix test suites: the nix-instantiate binary and NIXPKGS_LIB.
import { execFileSync } from "node:child_process";
import { chmodSync, existsSync, mkdtempSync, readdirSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
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

/**
 * Nix needs a store even to parse. The tests never touch the host's /nix/store: reading and
 * parsing use a dummy store, and evaluations that write (writeText for spec files) use a
 * private store under the temp directory — so they run the same as root and as any user.
 */
export const readOnlyStore = ["--store", "dummy://"];
let privateStore: string | undefined;
export function writableStore(): string[] {
  privateStore ??= mkdtempSync(join(tmpdir(), "hs-nix-store-"));
  return ["--store", `local?root=${privateStore}`];
}

/** Remove the private store (call from afterAll). */
export function removeWritableStore(): void {
  if (privateStore !== undefined) removeStore(privateStore);
  privateStore = undefined;
}

/** Store paths are read-only (0444 files, 0555 directories): make them writable, then remove. */
function removeStore(dir: string): void {
  const unlock = (path: string) => {
    try {
      chmodSync(path, 0o755);
      for (const entry of readdirSync(path, { withFileTypes: true })) if (entry.isDirectory()) unlock(join(path, entry.name));
    } catch {
      /* gone or not ours */
    }
  };
  unlock(dir);
  rmSync(dir, { recursive: true, force: true });
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
    ...(opts.readWrite ? ["--read-write-mode", ...writableStore()] : readOnlyStore),
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
