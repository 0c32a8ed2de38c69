// Shared discovery for the Nix test suites: the nix-instantiate binary and NIXPKGS_LIB.
import { afterAll, describe, it } from "vitest";
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

/**
 * Where the Nix evaluation inputs come from, in this order: NIXPKGS_LIB (a nixpkgs checkout,
 * a nixpkgs.lib checkout or a directory laid out like one), else `../shared/nix-eval` beside
 * the clone (what CI provides). Nothing machine-specific: both are relative to the user's
 * own choice or to the clone.
 */
export const sharedNixEval = resolve(repoRoot, "../shared/nix-eval");

function evalRoot(): { root?: string; why?: string; from: string } {
  const env = process.env.NIXPKGS_LIB;
  if (env) return { root: resolve(env), from: `NIXPKGS_LIB=${env}` };
  if (existsSync(join(sharedNixEval, "lib", "default.nix"))) return { root: sharedNixEval, from: "../shared/nix-eval" };
  return {
    from: "nothing",
    why: "NIXPKGS_LIB is not set and ../shared/nix-eval (nixpkgs lib + the NixOS module files) is not beside this clone; point NIXPKGS_LIB at a nixpkgs checkout",
  };
}

/** The directory holding nixpkgs lib's default.nix. */
export function findNixpkgsLib(): { dir?: string; why?: string } {
  const { root, why, from } = evalRoot();
  if (!root) return { why };
  if (existsSync(join(root, "lib", "default.nix"))) return { dir: join(root, "lib") };
  if (existsSync(join(root, "default.nix"))) return { dir: root };
  return { why: `${from} contains neither lib/default.nix nor default.nix` };
}

export interface NixosInputs {
  /** nixpkgs lib (a directory with default.nix) */
  lib: string;
  /** the NixOS tree (nixos/modules/…, nixos/lib/…) */
  nixos: string;
  /** agenix's checkout (modules/age.nix), if found */
  agenix?: string;
  /** why agenix was not found */
  agenixWhy?: string;
}

/**
 * nixpkgs lib plus the real NixOS module files (`nixos/` of the same tree; with NIXPKGS_LIB
 * naming a nixpkgs.lib checkout, which has none, `../shared/nix-eval/nixos`), and agenix's
 * module (AGENIX, else `agenix/` of the same tree, else `../shared/nix-eval/agenix`).
 */
export function findNixosInputs(): { inputs?: NixosInputs; why?: string } {
  const lib = findNixpkgsLib();
  if (!lib.dir) return { why: lib.why };
  const root = evalRoot().root!;
  const firstWith = (dirs: string[], file: string) => dirs.find((d) => existsSync(join(d, file)));
  const nixos = firstWith([join(root, "nixos"), join(sharedNixEval, "nixos")], "modules/system/boot/systemd.nix");
  if (!nixos) return { why: `no NixOS module files (nixos/modules/system/boot/systemd.nix) in ${root} or ../shared/nix-eval` };
  const agenixDirs = [process.env.AGENIX, join(root, "agenix"), join(sharedNixEval, "agenix")]
    .filter((d): d is string => !!d)
    .map((d) => resolve(d));
  const agenix = firstWith(agenixDirs, "modules/age.nix");
  return {
    inputs: {
      lib: lib.dir,
      nixos,
      ...(agenix ? { agenix } : { agenixWhy: "agenix's module not found (set AGENIX to an agenix checkout)" }),
    },
  };
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
  /** Evaluate with agenix's module (default: when found). */
  withAgenix?: boolean;
}

/** Evaluate tests/nix/eval-harness.nix and return its JSON. Throws with Nix's stderr on failure. */
export function evalHarness(nix: string, inputs: NixosInputs, opts: EvalOptions): unknown {
  const args = [
    "--eval",
    "--strict",
    "--json",
    ...(opts.readWrite ? ["--read-write-mode", ...writableStore()] : readOnlyStore),
    "tests/nix/eval-harness.nix",
    "--arg",
    "lib",
    `import ${inputs.lib}`,
    "--arg",
    "nixos",
    inputs.nixos,
    ...(opts.withAgenix === false || !inputs.agenix ? [] : ["--arg", "agenix", inputs.agenix]),
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

/** A unit as the harness's `units` attribute returns it: section → key → value(s). */
export type EvaluatedUnit = Record<string, Record<string, string | string[]>>;

/** A unit setting that may be given once or as a list, as a list. */
export const asList = (v: string | string[] | undefined): string[] => (v === undefined ? [] : Array.isArray(v) ? v : [v]);

/** Evaluate `configuration` through tests/nix/eval-harness.nix and return attribute `attr` (readWrite: a writable store). */
export type HarnessRun = (attr: string, configuration: string, options?: { readWrite?: boolean }) => unknown;

/**
 * A describe block of evaluation tests against NixOS's own modules, for `file`: without
 * nix-instantiate or the NixOS inputs it fails under CI (a missing prerequisite is a failure
 * there) and is skipped loudly elsewhere.
 */
export function describeNixEval(file: string, title: string, body: (run: HarnessRun) => void): void {
  const nix = findNixInstantiate();
  const found = findNixosInputs();
  const why = nix === undefined ? "nix-instantiate not found (apt-get install nix-bin)" : found.why;
  if (why !== undefined && inCI) {
    describe(title, () => {
      it("has its prerequisites (CI=true)", () => {
        throw new Error(`${why}; CI must run the Nix evaluation tests`);
      });
    });
    return;
  }
  if (why !== undefined) console.warn(`\n*** SKIPPED ${file}: ${why} ***\n`);
  describe.skipIf(why !== undefined)(title, () => {
    afterAll(removeWritableStore);
    body((attr, configuration, options) =>
      evalHarness(nix!, found.inputs!, { attr, configuration, readWrite: options?.readWrite ?? false }),
    );
  });
}
