/**
 * Shared test helpers: the compiled CLI, temp dirs, specs and vaults.
 * Kept small on purpose; suites import what they need.
 */
import { existsSync } from "node:fs";
import { chmod, mkdtemp, readdir, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { execa } from "execa";

export const repoRoot = fileURLToPath(new URL("..", import.meta.url));
export const cliPath = join(repoRoot, "helper", "dist", "cli.js");

/** Variables from the test runner's own environment that would change the CLI's behaviour. */
const leakyEnv = ["JOURNAL_STREAM", "CREDENTIALS_DIRECTORY", "NODE_OPTIONS", "OP_SERVICE_ACCOUNT_TOKEN", "HOMELAB_SECRETS_LOCK"];

export interface RunOptions {
  /** Added to a cleaned copy of this process's environment; `undefined` removes a variable. */
  readonly env?: Record<string, string | undefined>;
  readonly cwd?: string;
  readonly input?: string | Uint8Array;
  /** Kill the CLI after this long (ms); default 60 s. */
  readonly timeout?: number;
  /** Extra arguments for node itself (before the script). */
  readonly nodeArgs?: readonly string[];
}

export interface RunResult {
  readonly exitCode: number;
  readonly stdout: string;
  readonly stderr: string;
  /** Wall time of the whole process, in milliseconds. */
  readonly durationMs: number;
}

/** Run `node helper/dist/cli.js ARGS` as a real process; never throws on a non-zero exit. */
export async function runCli(args: readonly string[], options: RunOptions = {}): Promise<RunResult> {
  if (!existsSync(cliPath)) throw new Error(`${cliPath} is missing: build first (npx tsc -p tsconfig.json)`);
  const env: Record<string, string> = {};
  for (const [key, value] of Object.entries(process.env)) if (value !== undefined && !leakyEnv.includes(key)) env[key] = value;
  for (const [key, value] of Object.entries(options.env ?? {})) {
    if (value === undefined) delete env[key];
    else env[key] = value;
  }
  const started = performance.now();
  const result = await execa(process.execPath, [...(options.nodeArgs ?? []), cliPath, ...args], {
    reject: false,
    env,
    extendEnv: false,
    cwd: options.cwd ?? repoRoot,
    timeout: options.timeout ?? 60_000,
    stripFinalNewline: false,
    ...(options.input !== undefined ? { input: options.input } : { stdin: "ignore" }),
  });
  const durationMs = performance.now() - started;
  if (result.timedOut) throw new Error(`homelab-secrets ${args.join(" ")} timed out after ${options.timeout ?? 60_000} ms`);
  return { exitCode: result.exitCode ?? -1, stdout: String(result.stdout), stderr: String(result.stderr), durationMs };
}

/** A fresh private temp directory; remove it with `removeTempDirs()` (e.g. in afterAll). */
const created: string[] = [];
export async function makeTempDir(prefix = "hs-test-"): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), prefix));
  created.push(dir);
  return dir;
}
export async function removeTempDirs(): Promise<void> {
  await Promise.all(
    created.splice(0).map(async (dir) => {
      await makeWritable(dir);
      await rm(dir, { recursive: true, force: true });
    }),
  );
}

/** Tests make read-only directories (credential dirs are 0500); without root, rm needs u+w. */
async function makeWritable(dir: string): Promise<void> {
  try {
    await chmod(dir, 0o700);
    for (const entry of await readdir(dir, { withFileTypes: true })) if (entry.isDirectory()) await makeWritable(join(dir, entry.name));
  } catch {
    /* gone, or not ours to change */
  }
}

/** Write `spec` (an object, pretty-printed one key per line, or raw text) and return its path. */
export async function writeSpec(dir: string, spec: unknown, name = "spec.json"): Promise<string> {
  const path = join(dir, name);
  await writeFile(path, typeof spec === "string" ? spec : `${JSON.stringify(spec, null, 2)}\n`);
  return path;
}

/** A minimal valid spec writing into `outputDir`; override any top-level key. */
export function makeSpec(outputDir: string, overrides: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    version: 1,
    name: "test",
    outputDir,
    files: { secret: { ref: "op://Homelab/Item/password", mode: "0400" } },
    ...overrides,
  };
}

/** Write a file-source vault: `{ vault: { item: { field: value } } }` plus optional sections. */
export async function writeVault(
  dir: string,
  vaults: Record<string, Record<string, { fields?: Record<string, string>; sections?: Record<string, Record<string, string>> }>>,
  name = "vault.json",
): Promise<string> {
  const path = join(dir, name);
  const doc = { vaults: Object.fromEntries(Object.entries(vaults).map(([v, items]) => [v, { items }])) };
  await writeFile(path, JSON.stringify(doc, null, 2));
  await chmod(path, 0o600);
  return path;
}
