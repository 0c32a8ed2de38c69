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
import { buildAgent } from "../../helper/scripts/build-agent.mjs";
import { startFakeConnect, type FakeConnect, type FakeConnectOptions } from "../connect/fake-connect.mjs";
import { Container, run, type PortForward } from "./container.js";
import {
  credentialFiles,
  deadlineOf,
  installGolden,
  loadGolden,
  namedAccounts,
  specOfUnit,
  specsOf,
  unitValues,
  type Golden,
} from "./render-units.js";
import { demoVault, type Vault } from "./vault.js";

const here = dirname(fileURLToPath(import.meta.url));
export const repoRoot = resolve(here, "../..");
const cacheDir = process.env["HOMELAB_E2E_CACHE"] ?? "/var/cache/homelab-secrets-e2e";

/** The Debian releases the suite boots, with the systemd each ships (checked after the build). */
export const distros = ["bookworm", "trixie"] as const;
export type Distro = (typeof distros)[number];

function distroOf(value: string | undefined): Distro {
  if (value === undefined || value === "") return "bookworm";
  if ((distros as readonly string[]).includes(value)) return value as Distro;
  throw new Error(`HS_E2E_DISTRO=${value}: expected one of ${distros.join(", ")}`);
}

/** Which Debian release this run boots: `HS_E2E_DISTRO` (set per vitest project), default bookworm. */
export const distro: Distro = distroOf(process.env["HS_E2E_DISTRO"]);
export const rootfs = join(cacheDir, `rootfs-${distro}`);
const packages = "systemd,systemd-sysv,dbus,libstdc++6"; // libstdc++6: the host's node links it
/** debootstrap must check what it downloads; without this keyring it would warn and go on unchecked. */
const keyring = "/usr/share/keyrings/debian-archive-keyring.gpg";
export const goldenFile = join(repoRoot, "tests/golden/units.json"); // written by tests/nix/update-golden.sh
export const vaultPath = "/etc/homelab-secrets/vault.json";

/**
 * The Debian mirror apt on this host uses (never written into the repository): the first `deb`
 * source for a Debian release suite. The same mirror serves every release the suite boots.
 */
export function aptMirror(): string | undefined {
  const suites = new Set<string>([...distros, "oldstable", "stable", "testing", "unstable", "sid"]);
  const codename = existsSync("/etc/os-release")
    ? /^VERSION_CODENAME=(\S+)$/m.exec(readFileSync("/etc/os-release", "utf8"))?.[1]
    : undefined;
  if (codename) suites.add(codename);
  const texts: string[] = [];
  for (const f of ["/etc/apt/sources.list"]) if (existsSync(f)) texts.push(readFileSync(f, "utf8"));
  const d = "/etc/apt/sources.list.d";
  if (existsSync(d))
    for (const f of readdirSync(d)
      .filter((n) => /\.(list|sources)$/.test(n))
      .sort())
      texts.push(readFileSync(join(d, f), "utf8"));
  for (const text of texts) {
    for (const line of text.split("\n")) {
      const m = line.match(/^deb\s+(?:\[[^\]]*\]\s+)?(\S+)\s+(\S+)\s/);
      if (m && suites.has(m[2]!)) return m[1];
    }
    for (const block of text.split(/\n\s*\n/)) {
      const field = (k: string) =>
        block
          .match(new RegExp(`^${k}:\\s*(.+)$`, "mi"))?.[1]
          ?.trim()
          .split(/\s+/) ?? [];
      if (field("Types").includes("deb") && field("Suites").some((x) => suites.has(x))) return field("URIs")[0];
    }
  }
  return undefined;
}

/** Build this distro's rootfs once per machine; a lock per distro keeps concurrent runs from racing. */
async function ensureRootfs(): Promise<void> {
  const stamp = `${rootfs}.ok`;
  const ready = () => existsSync(stamp) && readFileSync(stamp, "utf8").trim() === packages;
  if (ready()) return;
  mkdirSync(cacheDir, { recursive: true });
  const mirror = aptMirror();
  if (!mirror) throw new Error("no Debian mirror in this machine's apt sources (/etc/apt/sources.list{,.d})");
  const script = `
    set -e
    [ -f "$1.ok" ] && [ "$(cat "$1.ok")" = "$2" ] && exit 0
    rm -rf "$1" "$1.ok" "$1.tmp"
    start=$(date +%s)
    debootstrap --variant=minbase --keyring="$5" --include="$2" "$3" "$1.tmp" "$4" >"$1.log" 2>&1 || { tail -20 "$1.log" >&2; exit 1; }
    echo "debootstrap $3: $(( $(date +%s) - start )) s" >>"$1.log"
    mv "$1.tmp" "$1"
    printf '%s\\n' "$2" >"$1.ok"`;
  console.warn(`[e2e] building the Debian ${distro} rootfs once for this machine in ${rootfs} (~30 s)`);
  await run(
    "flock",
    ["-w", "900", join(cacheDir, `.build-${distro}.lock`), "sh", "-c", script, "sh", rootfs, packages, distro, mirror, keyring],
    { timeoutMs: 960_000 },
  );
  if (!ready()) throw new Error("rootfs build finished without its stamp");
}

/** The systemd major version installed in the rootfs (from its dpkg database), or 0 if unknown. */
function systemdVersionOf(root: string): number {
  try {
    const status = readFileSync(join(root, "var/lib/dpkg/status"), "utf8");
    const block = status.split(/\n\n/).find((b) => /^Package: systemd$/m.test(b));
    return Number(/^Version: (?:\d+:)?(\d+)/m.exec(block ?? "")?.[1] ?? 0);
  } catch {
    return 0;
  }
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
  if (!existsSync(keyring)) return `${keyring} not found (apt-get install debian-archive-keyring)`;
  try {
    await ensureRootfs();
  } catch (e) {
    return `the Debian ${distro} rootfs could not be built: ${(e as Error).message}`;
  }
  if (!systemdVersionOf(rootfs)) return `no systemd package in the ${distro} rootfs ${rootfs}`;
  return null;
}

const unavailable = await prerequisites();

/** The systemd major version this run boots (252 on bookworm, 257 on trixie); 0 when the suite cannot run. */
export const systemdVersion: number = unavailable ? 0 : systemdVersionOf(rootfs);

/** What the suite boots, for test names and logs: `Debian trixie, systemd 257`. */
export const platform = `Debian ${distro}${systemdVersion ? `, systemd ${systemdVersion}` : ""}`;

/**
 * `describe` when the suite can run, its name suffixed with the Debian release and systemd
 * version. Otherwise say so loudly and skip — except in CI as root, where a missing
 * prerequisite is a failure.
 */
export function describeE2E(name: string, body: () => void): void {
  const label = `${name} [${platform}]`;
  if (!unavailable) {
    describe(label, body);
    return;
  }
  if (process.env["CI"] === "true" && process.getuid?.() === 0) {
    describe(label, () =>
      it("has its prerequisites (CI=true, root)", () => {
        throw new Error(`real-systemd e2e cannot run: ${unavailable}`);
      }),
    );
    return;
  }
  console.warn(`\n*** SKIPPED real-systemd e2e "${label}": ${unavailable} ***\n`);
  describe.skip(`${label} — SKIPPED: ${unavailable}`, body);
}

export interface Scenario {
  c: Container;
  golden: Golden;
  unitPaths: string[];
  setVault(vault: Vault): Promise<void>;
  /** uid of a user inside the container */
  uid(user: string): Promise<number>;
  /** The Debian release booted. */
  distro: Distro;
  /** The systemd major version booted, as `systemctl --version` reports it inside. */
  systemd: number;
}

const cli = join(repoRoot, "helper/dist/cli.js");
const wrapper = `#!/bin/sh
exec /usr/local/bin/node /opt/homelab-secrets/lib/helper/dist/cli.js "$@"
`;

/** How `bootScenario` sets up the container. */
export interface ScenarioOptions {
  /**
   * Give the container the host's network (default: a private one with only loopback, see
   * `serveConnect`). Only for what must reach outside, such as apt inside the container; a test
   * server on a fixed loopback port would then also answer other runs' containers.
   */
  hostNetwork?: boolean;
}

/** One container per test file: helper, probe, golden units, tokens and vault installed, booted. */
export async function bootScenario(label: string, vault: Vault = demoVault(), options: ScenarioOptions = {}): Promise<Scenario> {
  if (!existsSync(cli)) throw new Error(`${cli} is missing: build the helper first (npx tsc -p tsconfig.json)`);
  const golden = loadGolden(goldenFile);
  const c = await Container.create({
    name: `hs-${label}-${process.pid}`.slice(0, 60),
    rootfs,
    bindsRo: { [process.execPath]: "/usr/local/bin/node", [repoRoot]: "/opt/homelab-secrets/lib" },
    hostNetwork: options.hostNetwork ?? false,
  });
  try {
    const put = (path: string, content: string, mode: number) => {
      mkdirSync(dirname(join(c.root, path)), { recursive: true });
      writeFileSync(join(c.root, path), content);
      chmodSync(join(c.root, path), mode);
    };
    put("/opt/homelab-secrets/bin/homelab-secrets", wrapper, 0o755);
    // The credential agent's front end, where the package keeps it (the golden units name it).
    buildAgent({ out: join(c.root, "/opt/homelab-secrets/libexec/homelab-secrets/homelab-secrets-agent") });
    mkdirSync(join(c.root, "/opt/homelab-secrets/lib"), { recursive: true });
    copyFileSync(join(here, "probe.sh"), join(c.root, "/usr/local/bin/e2e-probe"));
    chmodSync(join(c.root, "/usr/local/bin/e2e-probe"), 0o755);
    // Quieter, faster boots: mask what a test container does not need.
    mkdirSync(join(c.root, "/etc/systemd/system"), { recursive: true });
    for (const unit of [
      "console-getty.service",
      "getty@.service",
      "systemd-timesyncd.service",
      "apt-daily.timer",
      "apt-daily-upgrade.timer",
    ]) {
      await run("ln", ["-sfn", "/dev/null", join(c.root, "/etc/systemd/system", unit)]);
    }

    const specs = [...specsOf(golden).values()];
    const { users, groups } = namedAccounts(golden, specs);
    for (const g of groups) if (!users.has(g)) await run("chroot", [c.root, "groupadd", "--system", "-f", g]);
    for (const u of users)
      await run("chroot", [c.root, "useradd", "--system", "--user-group", "--no-create-home", "--shell", "/usr/sbin/nologin", u]);
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
    if (node.code !== 0)
      throw new Error(`the host's node (${process.execPath}) does not run inside the Debian ${distro} rootfs: ${node.stderr}`);
    const version = Number(/^systemd (\d+)/.exec((await c.cx(["systemctl", "--version"])).stdout)?.[1] ?? 0);
    if (version !== systemdVersion)
      throw new Error(`${distro}: systemd ${version} booted, but the rootfs's dpkg database says ${systemdVersion}`);
    return {
      distro,
      systemd: version,
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
    const lines = r.stdout
      .split("\n")
      .filter((m) => m.startsWith(`e2e-probe ${name} `))
      .map((m) => m.slice(`e2e-probe ${name} `.length));
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

/**
 * A fake Connect server (the real protocol, `tests/connect/fake-connect.mjs`) that the container
 * reaches at its own `127.0.0.1:port`, the address the golden spec names. The server listens on a
 * free host port and the container's port is forwarded to it, so runs of the same file (both
 * distros' projects, another suite run) never meet on a fixed port. `close()` ends both; until
 * the call and after it, the container's port refuses connections as with no server at all.
 */
export async function serveConnect(c: Container, port: number, options: Omit<FakeConnectOptions, "port" | "host">): Promise<FakeConnect> {
  const server = await startFakeConnect({ ...options, port: 0, host: "127.0.0.1" });
  let forward: PortForward;
  try {
    forward = await c.forward(port, server.port);
  } catch (e) {
    await server.close();
    throw e;
  }
  return {
    ...server,
    close: async () => {
      await forward.close();
      await server.close();
    },
  };
}
