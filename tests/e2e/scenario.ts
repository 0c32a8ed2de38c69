/**
 * Shared set-up for the real-systemd scenarios: prerequisites (and the loud skip), the cached
 * Debian rootfs, and one booted container per test file with the helper, the probe, the
 * golden units and a test vault installed.
 */
import { existsSync, mkdirSync, readFileSync, readdirSync, chmodSync, writeFileSync, copyFileSync } from "node:fs";
import { createHash } from "node:crypto";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { describe, it } from "vitest";
import { Container, run } from "./container.js";
import { credentialFiles, deadlineOf, installGolden, loadGolden, namedAccounts, specOfUnit, specsOf, unitValues, type Golden } from "./render-units.js";
import { demoVault, type Vault } from "./vault.js";

const here = dirname(fileURLToPath(import.meta.url));
export const repoRoot = resolve(here, "../..");
const cacheDir = process.env["HOMELAB_E2E_CACHE"] ?? "/var/cache/homelab-secrets-e2e";
export const rootfs = join(cacheDir, "rootfs-bookworm");
const packages = "systemd,systemd-sysv,dbus,libstdc++6"; // libstdc++6: the host's node links it
export const goldenFile = join(repoRoot, "tests/golden/units.json"); // written by tests/nix/update-golden.sh
export const vaultPath = "/etc/homelab-secrets/vault.json";

/** The Debian mirror apt on this host uses (never written into the repository). */
export function aptMirror(): string | undefined {
  const texts: string[] = [];
  for (const f of ["/etc/apt/sources.list"]) if (existsSync(f)) texts.push(readFileSync(f, "utf8"));
  const d = "/etc/apt/sources.list.d";
  if (existsSync(d)) for (const f of readdirSync(d).filter((n) => /\.(list|sources)$/.test(n))) texts.push(readFileSync(join(d, f), "utf8"));
  for (const text of texts) {
    for (const line of text.split("\n")) {
      const m = line.match(/^deb\s+(?:\[[^\]]*\]\s+)?(\S+)\s+bookworm\s/);
      if (m) return m[1];
    }
    for (const block of text.split(/\n\s*\n/)) {
      const field = (k: string) => block.match(new RegExp(`^${k}:\\s*(.+)$`, "mi"))?.[1]?.trim().split(/\s+/) ?? [];
      if (field("Types").includes("deb") && field("Suites").includes("bookworm")) return field("URIs")[0];
    }
  }
  return undefined;
}

/** Build the rootfs once per machine; a lock keeps concurrent runs from racing. */
async function ensureRootfs(): Promise<void> {
  const stamp = `${rootfs}.ok`;
  const ready = () => existsSync(stamp) && readFileSync(stamp, "utf8").trim() === packages;
  if (ready()) return;
  mkdirSync(cacheDir, { recursive: true });
  const script = `
    set -e
    [ -f "$1.ok" ] && [ "$(cat "$1.ok")" = "$2" ] && exit 0
    rm -rf "$1" "$1.ok" "$1.tmp"
    debootstrap --variant=minbase --include="$2" bookworm "$1.tmp" $3 >"$1.log" 2>&1 || { tail -20 "$1.log" >&2; exit 1; }
    mv "$1.tmp" "$1"
    printf '%s\\n' "$2" >"$1.ok"`;
  console.warn(`[e2e] building the Debian rootfs once for this machine in ${rootfs} (~30 s)`);
  await run("flock", ["-w", "900", join(cacheDir, ".build.lock"), "sh", "-c", script, "sh", rootfs, packages, aptMirror() ?? ""], { timeoutMs: 960_000 });
  if (!ready()) throw new Error("rootfs build finished without its stamp");
}

async function which(cmd: string): Promise<boolean> {
  return (await run("sh", ["-c", 'command -v "$1"', "sh", cmd], { allowFail: true })).code === 0;
}

/** null when the suite can run, else why not. */
async function prerequisites(): Promise<string | null> {
  if (process.platform !== "linux") return "not Linux";
  if (process.getuid?.() !== 0) return "not root (systemd-nspawn needs root)";
  for (const cmd of ["systemd-nspawn", "debootstrap", "nsenter", "flock", "timeout", "mount", "chroot"]) {
    if (!(await which(cmd))) return `${cmd} not found (apt-get install systemd-container debootstrap)`;
  }
  try {
    await ensureRootfs();
  } catch (e) {
    return `the Debian rootfs could not be built: ${(e as Error).message}`;
  }
  return null;
}

const unavailable = await prerequisites();

/**
 * `describe` when the suite can run. Otherwise say so loudly and skip — except in CI as root,
 * where a missing tool is a failure.
 */
export function describeE2E(name: string, body: () => void): void {
  if (!unavailable) {
    describe(name, body);
    return;
  }
  if (process.env["CI"] === "true" && process.getuid?.() === 0) {
    describe(name, () => it("has its prerequisites (CI=true, root)", () => {
      throw new Error(`real-systemd e2e cannot run: ${unavailable}`);
    }));
    return;
  }
  console.warn(`\n*** SKIPPED real-systemd e2e "${name}": ${unavailable} ***\n`);
  describe.skip(`${name} — SKIPPED: ${unavailable}`, body);
}

export interface Scenario {
  c: Container;
  golden: Golden;
  unitPaths: string[];
  setVault(vault: Vault): Promise<void>;
  /** uid of a user inside the container */
  uid(user: string): Promise<number>;
}

const cli = join(repoRoot, "helper/dist/cli.js");
const wrapper = `#!/bin/sh
exec /usr/local/bin/node /opt/homelab-secrets/lib/helper/dist/cli.js "$@"
`;

/** One container per test file: helper, probe, golden units, tokens and vault installed, booted. */
export async function bootScenario(label: string, vault: Vault = demoVault()): Promise<Scenario> {
  if (!existsSync(cli)) throw new Error(`${cli} is missing: build the helper first (npx tsc -p tsconfig.json)`);
  const golden = loadGolden(goldenFile);
  const c = await Container.create({
    name: `hs-${label}-${process.pid}`.slice(0, 60),
    rootfs,
    bindsRo: { [process.execPath]: "/usr/local/bin/node", [repoRoot]: "/opt/homelab-secrets/lib" },
  });
  try {
    const put = (path: string, content: string, mode: number) => {
      mkdirSync(dirname(join(c.root, path)), { recursive: true });
      writeFileSync(join(c.root, path), content);
      chmodSync(join(c.root, path), mode);
    };
    put("/opt/homelab-secrets/bin/homelab-secrets", wrapper, 0o755);
    mkdirSync(join(c.root, "/opt/homelab-secrets/lib"), { recursive: true });
    copyFileSync(join(here, "probe.sh"), join(c.root, "/usr/local/bin/e2e-probe"));
    chmodSync(join(c.root, "/usr/local/bin/e2e-probe"), 0o755);
    // Quieter, faster boots: mask what a test container does not need.
    mkdirSync(join(c.root, "/etc/systemd/system"), { recursive: true });
    for (const unit of ["console-getty.service", "getty@.service", "systemd-timesyncd.service", "apt-daily.timer", "apt-daily-upgrade.timer"]) {
      await run("ln", ["-sfn", "/dev/null", join(c.root, "/etc/systemd/system", unit)]);
    }

    const specs = [...specsOf(golden).values()];
    const { users, groups } = namedAccounts(golden, specs);
    for (const g of groups) if (!users.has(g)) await run("chroot", [c.root, "groupadd", "--system", "-f", g]);
    for (const u of users) await run("chroot", [c.root, "useradd", "--system", "--user-group", "--no-create-home", "--shell", "/usr/sbin/nologin", u]);
    const unitPaths = installGolden(c.root, golden);
    for (const [path, entry] of Object.entries(golden.etc ?? {})) {
      await run("chroot", [c.root, "chown", `${entry.user ?? "root"}:${entry.group ?? "root"}`, `/etc/${path}`]);
    }
    for (const [name, path] of credentialFiles(golden)) {
      if (!existsSync(join(c.root, path))) put(path, `e2e-${name}-${label}`, 0o600);
    }
    put(vaultPath, JSON.stringify(vault, null, 2), 0o644);
    await c.boot();
    const node = await c.cx(["/usr/local/bin/node", "-e", "process.stdout.write(process.version)"], { allowFail: true });
    if (node.code !== 0) throw new Error(`the host's node (${process.execPath}) does not run inside the Debian rootfs: ${node.stderr}`);
    return {
      c,
      golden,
      unitPaths,
      setVault: (v) => c.writeFile(vaultPath, JSON.stringify(v, null, 2), "0644"),
      uid: async (user) => Number((await c.cx(["id", "-u", user])).stdout.trim()),
    };
  } catch (e) {
    await c.teardown();
    throw e;
  }
}

/** Wait until the probe of the current run of `unit` has reported, return that run's lines. */
export async function waitForProbe(c: Container, unit: string, name: string, timeoutMs = 10_000): Promise<string[]> {
  const deadline = Date.now() + timeoutMs;
  const { InvocationID } = await c.show(unit, ["InvocationID"]);
  for (;;) {
    await c.syncJournal();
    const r = await c.cx(["journalctl", "-b0", "--no-pager", "-o", "cat", `_SYSTEMD_INVOCATION_ID=${InvocationID}`], { allowFail: true });
    const lines = r.stdout.split("\n").filter((m) => m.startsWith(`e2e-probe ${name} `)).map((m) => m.slice(`e2e-probe ${name} `.length));
    if (lines.includes("ready")) return lines;
    if (Date.now() > deadline) throw new Error(`probe ${name} did not report for ${unit} (${InvocationID}):\n${r.stdout}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

/** The main process's environment, read from /proc: exactly what the service got. */
export async function mainEnviron(c: Container, unit: string): Promise<Map<string, Buffer>> {
  const { MainPID } = await c.show(unit, ["MainPID"]);
  if (!MainPID || MainPID === "0") throw new Error(`${unit} has no main process`);
  const raw = (await c.cx(["cat", `/proc/${MainPID}/environ`])).out;
  const env = new Map<string, Buffer>();
  let start = 0;
  for (let i = 0; i < raw.length; i++) {
    if (raw[i] !== 0) continue;
    const entry = raw.subarray(start, i);
    const eq = entry.indexOf(0x3d);
    env.set(entry.subarray(0, eq).toString("utf8"), Buffer.from(entry.subarray(eq + 1)));
    start = i + 1;
  }
  return env;
}

export interface ProbeFile {
  mode: string;
  uid: number;
  gid: number;
  sha256: string;
}

/** The probe's `file PATH MODE UID GID SHA256|unreadable` lines. */
export function probeFiles(lines: string[]): Map<string, ProbeFile> {
  const files = new Map<string, ProbeFile>();
  for (const line of lines) {
    const m = line.match(/^file (\S+) (\d+) (\d+) (\d+) (\S+)$/);
    if (m) files.set(m[1]!, { mode: m[2]!, uid: Number(m[3]), gid: Number(m[4]), sha256: m[5]! });
  }
  return files;
}

export const sha256 = (data: string | Buffer) => createHash("sha256").update(data).digest("hex");

/** What a secrets unit with the connect source talks to: the port on loopback, the token its credential holds, its deadline. */
export function connectBackendOf(s: Scenario, secretsUnit: string): { port: number; token: string; deadline: number } {
  const configured = specOfUnit(s.golden, secretsUnit)?.source?.["host"];
  const host = new URL(typeof configured === "string" ? configured : "");
  if (host.hostname !== "127.0.0.1") throw new Error(`${secretsUnit}: the connect host must be on loopback, not ${host.hostname}`);
  const credential = unitValues(s.golden, secretsUnit, "Service", "LoadCredential")[0]!;
  return {
    port: Number(host.port),
    token: readFileSync(join(s.c.root, credential.slice(credential.indexOf(":") + 1)), "utf8"),
    deadline: deadlineOf(s.golden, secretsUnit),
  };
}
