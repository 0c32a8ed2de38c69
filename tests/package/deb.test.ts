// The Debian package without booting anything: the template unit against the unit the NixOS
// module generates (tests/golden/units.json), and the built .deb's contents, owners, modes,
// control fields and production dependency set.
import { execFileSync, spawnSync } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, readdirSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { cliPath, debVersion, nodePath } from "../../helper/scripts/package-deb.mjs";

const repo = resolve(dirname(fileURLToPath(import.meta.url)), "../..");
const templatePath = join(repo, "packaging/systemd/homelab-secrets@.service");

type Sections = Record<string, Record<string, string[]>>;

/** A unit file as section → key → values (a repeated key collects every value). */
function parseUnit(text: string): Sections {
  const out: Sections = {};
  let section = "";
  for (const raw of text.split("\n")) {
    const line = raw.trim();
    if (!line || line.startsWith("#") || line.startsWith(";")) continue;
    const header = /^\[(.+)\]$/.exec(line);
    if (header) {
      section = header[1]!;
      out[section] ??= {};
      continue;
    }
    const eq = line.indexOf("=");
    if (eq < 0 || !section) throw new Error(`unit line without key or section: ${line}`);
    (out[section]![line.slice(0, eq)] ??= []).push(line.slice(eq + 1));
  }
  return out;
}

type GoldenValue = string | number | boolean | Array<string | number | boolean>;
interface GoldenFile {
  units: Record<string, Record<string, Record<string, GoldenValue>>>;
  storePaths: Record<string, string>;
}
const golden = JSON.parse(readFileSync(join(repo, "tests/golden/units.json"), "utf8")) as GoldenFile;

/** One systemd value for comparison: booleans as systemd writes them, lists space-joined. */
function normalize(value: GoldenValue | string[]): string {
  const items = Array.isArray(value) ? value : [value];
  return items
    .map((v) => (v === true || v === "true" || v === "yes" ? "yes" : v === false || v === "false" || v === "no" ? "no" : String(v)))
    .join(" ");
}

/** A golden (NixOS) value as the package writes it: store paths → FHS paths, the service name → %i. */
function toPackage(value: string, service: string): string {
  const pkg = golden.storePaths["package"]!;
  const systemd = golden.storePaths["systemd"]!;
  return value
    .replaceAll(`${pkg}/bin/homelab-secrets`, "/usr/bin/homelab-secrets")
    .replaceAll(`${systemd}/bin/systemctl`, "/usr/bin/systemctl")
    .replace(/\/nix\/store\/[0-9a-z]{32}-[A-Za-z0-9._-]+-spec\.json/g, `/etc/homelab-secrets/services/${service}.json`)
    .replaceAll(service, "%i");
}

describe("homelab-secrets@.service: the NixOS secrets unit, without Nix", () => {
  const template = parseUnit(readFileSync(templatePath, "utf8"));
  const fileUnit = golden.units["static-demo-secrets.service"]!;
  const networkUnit = golden.units["connect-demo-secrets.service"]!;

  // Every way the template may differ from static-demo-secrets.service, and why:
  const allowed: Record<string, (t: string[] | undefined) => void> = {
    // Token files: fixed root-only paths under /etc/homelab-secrets, both loaded (the NixOS
    // module loads only the one its spec names, from a path the admin configures).
    LoadCredential: (t) =>
      expect(t).toEqual(["op-token:/etc/homelab-secrets/op-token", "op-connect-token:/etc/homelab-secrets/op-connect-token"]),
    // One template serves every source, so it may reach the network like the module's unit
    // for a network source (connect-demo-secrets) instead of PrivateNetwork= as for a file source.
    PrivateNetwork: (t) => {
      expect(t).toBeUndefined();
      expect(networkUnit["Service"]!["PrivateNetwork"]).toBeUndefined();
    },
    RestrictAddressFamilies: (t) => expect(normalize(t!)).toBe(normalize(networkUnit["Service"]!["RestrictAddressFamilies"]!)),
    // NixOS gives every service a PATH of store paths (coreutils, findutils, grep, sed, systemd);
    // a plain-Linux unit keeps systemd's default PATH, which has the same tools under /usr.
    Environment: (t) => {
      expect(t).toBeUndefined();
      expect(normalize(fileUnit["Service"]!["Environment"]!)).toMatch(/^"?PATH=\/nix\/store\/[^ ]*"?$/);
    },
    // Read only by NixOS's switch-to-configuration (a switch never restarts a secrets unit);
    // systemd ignores X- keys and dpkg upgrades restart no unit of this package.
    "X-RestartIfChanged": (t) => {
      expect(t).toBeUndefined();
      expect(normalize(fileUnit["Service"]!["X-RestartIfChanged"]!)).toBe("no");
    },
    // No core dumps of a process that holds the token; required even before the module sets it.
    LimitCORE: (t) => {
      expect(t).toEqual(["0"]);
      const nix = fileUnit["Service"]!["LimitCORE"];
      if (nix !== undefined) expect(normalize(nix)).toBe("0");
    },
  };

  it("has every [Service] key of the golden static-demo-secrets.service with the same value, except the listed differences", () => {
    const service = template["Service"]!;
    const keys = new Set([...Object.keys(fileUnit["Service"]!), ...Object.keys(service)]);
    const mismatches: string[] = [];
    for (const key of [...keys].sort()) {
      if (key in allowed) {
        allowed[key]!(service[key]);
        continue;
      }
      const nix = fileUnit["Service"]![key];
      const pkg = service[key];
      if (nix === undefined || pkg === undefined) {
        mismatches.push(`${key}: ${nix === undefined ? "only in the template" : "missing from the template"}`);
        continue;
      }
      const want = toPackage(normalize(nix), "static-demo");
      if (normalize(pkg) !== want) mismatches.push(`${key}: template ${normalize(pkg)} ≠ module ${want}`);
    }
    expect(mismatches).toEqual([]);
  });

  it("has the hardening the brief singles out", () => {
    expect(template["Service"]!["SystemCallErrorNumber"]).toEqual(["EPERM"]);
    expect(template["Service"]!["LimitCORE"]).toEqual(["0"]);
    expect(template["Service"]!["RuntimeDirectory"]).toEqual(["%i-secrets"]);
    expect(template["Service"]!["RemainAfterExit"]).toEqual(["yes"]);
  });

  it("[Unit] and [Install] tie it to %i.service as the module ties a secrets unit to its service", () => {
    for (const section of ["Unit", "Install"]) {
      const nix = networkUnit[section]!;
      const pkg = template[section]!;
      const ignore = new Set(["Documentation"]);
      const keys = [...new Set([...Object.keys(nix), ...Object.keys(pkg)])].filter((k) => !ignore.has(k)).sort();
      expect(Object.fromEntries(keys.map((k) => [k, pkg[k] && normalize(pkg[k])])), section).toEqual(
        Object.fromEntries(keys.map((k) => [k, nix[k] === undefined ? undefined : toPackage(normalize(nix[k]), "connect-demo")])),
      );
    }
  });

  it("systemd-analyze verify accepts an instance of it", () => {
    const analyze = (() => {
      try {
        return execFileSync("sh", ["-c", "command -v systemd-analyze"], { encoding: "utf8" }).trim();
      } catch {
        return "";
      }
    })();
    if (!analyze) {
      if (process.env["CI"] === "true") throw new Error("systemd-analyze not found (apt-get install systemd)");
      console.warn("*** SKIPPED systemd-analyze verify: not installed ***");
      return;
    }
    const dir = mkdtempSync(join(tmpdir(), "hs-unit-"));
    try {
      const unit = readFileSync(templatePath, "utf8");
      execFileSync(
        "sh",
        ["-c", 'cat > "$1/homelab-secrets@.service" && printf "[Service]\\nExecStart=/bin/true\\n" > "$1/demo.service"', "sh", dir],
        { input: unit },
      );
      const r = execFileSync(
        "sh",
        [
          "-c",
          'cd "$1" && SYSTEMD_LOG_LEVEL=warning systemd-analyze verify --man=no ./homelab-secrets@demo.service 2>&1 || true',
          "sh",
          dir,
        ],
        { encoding: "utf8" },
      );
      // The binaries exist only once the package is installed; anything else is a unit error.
      const problems = r
        .split("\n")
        .filter(
          (l) => l.trim() && !/Command \/usr\/bin\/homelab-secrets is not executable|homelab-secrets: No such file|not found/.test(l),
        );
      expect(problems).toEqual([]);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe("homelab-secrets-refresh@.service and .timer: the NixOS refresh units, without Nix", () => {
  const service = parseUnit(readFileSync(join(repo, "packaging/systemd/homelab-secrets-refresh@.service"), "utf8"));
  const timer = parseUnit(readFileSync(join(repo, "packaging/systemd/homelab-secrets-refresh@.timer"), "utf8"));
  const nix = golden.units["refresh-demo-secrets-refresh.service"]!;
  const nixTimer = golden.units["refresh-demo-secrets-refresh.timer"]!;
  // What differs from refresh-demo's refresh unit (a connect source over plain http, deadline 3), and why:
  const differs: Record<string, string[]> = {
    // As in homelab-secrets@.service: both token files; the default PATH.
    LoadCredential: ["op-token:/etc/homelab-secrets/op-token", "op-connect-token:/etc/homelab-secrets/op-connect-token"],
    // What a change does, in one variable a drop-in can set (empty: only rewrite).
    Environment: ['"HOMELAB_SECRETS_ON_CHANGE=--restart %i.service"'],
    ExecStart: ["/usr/bin/homelab-secrets refresh --spec /etc/homelab-secrets/services/%i.json --deadline 45 $HOMELAB_SECRETS_ON_CHANGE"],
    // The deadline 45 of homelab-secrets@.service (75 s) plus the 90 s of the restart.
    TimeoutStartSec: ["165"],
    // As homelab-secrets@.service: /proc/net hidden unless a drop-in opens it for a plain-http Connect on this host.
    ProcSubset: ["pid"],
    LimitCORE: ["0"],
  };

  it("has every [Service] key of the golden refresh unit with the same value, except the listed differences", () => {
    const s = service["Service"]!;
    const mismatches: string[] = [];
    for (const key of [...new Set([...Object.keys(nix["Service"]!), ...Object.keys(s)])].sort()) {
      if (key === "X-RestartIfChanged") continue; // read only by NixOS's switch
      if (key in differs) {
        if (normalize(s[key] ?? []) !== normalize(differs[key]!)) mismatches.push(`${key}: ${normalize(s[key] ?? [])}`);
        continue;
      }
      const want = nix["Service"]![key];
      if (want === undefined || s[key] === undefined) {
        mismatches.push(`${key}: ${want === undefined ? "only in the template" : "missing from the template"}`);
        continue;
      }
      const w = toPackage(normalize(want), "refresh-demo");
      if (normalize(s[key]) !== w) mismatches.push(`${key}: template ${normalize(s[key])} ≠ module ${w}`);
    }
    expect(mismatches).toEqual([]);
    expect(normalize(nix["Service"]!["ExecStart"]!)).toMatch(/ refresh --spec \S+ --deadline 3 --restart refresh-demo\.service$/);
  });

  it("[Unit]: after the secrets instance, skipped while /run/%i-secrets is absent; no [Install] (its timer starts it)", () => {
    const pkg = service["Unit"]!;
    const keys = [...new Set([...Object.keys(nix["Unit"]!), ...Object.keys(pkg)])].filter((k) => k !== "Documentation").sort();
    expect(Object.fromEntries(keys.map((k) => [k, pkg[k] && normalize(pkg[k])]))).toEqual(
      Object.fromEntries(
        keys.map((k) => [
          k,
          nix["Unit"]![k] === undefined
            ? undefined
            : toPackage(normalize(nix["Unit"]![k]), "refresh-demo").replace("%i-secrets.service", "homelab-secrets@%i.service"),
        ]),
      ),
    );
    expect(service["Install"]).toBeUndefined();
  });

  it("the timer: the module's [Timer] and [Install]", () => {
    for (const section of ["Timer", "Install"]) {
      const want = Object.fromEntries(Object.entries(nixTimer[section]!).map(([k, v]) => [k, normalize(v)]));
      expect(Object.fromEntries(Object.entries(timer[section]!).map(([k, v]) => [k, normalize(v)])), section).toEqual(want);
    }
  });
});

describe("debVersion", () => {
  it("appends a suffix to package.json's version and refuses what Debian would not parse", () => {
    const base = (JSON.parse(readFileSync(join(repo, "package.json"), "utf8")) as { version: string }).version;
    expect(debVersion()).toBe(base);
    expect(debVersion("~e2e1")).toBe(`${base}~e2e1`);
    expect(() => debVersion("-1")).toThrow(/not a Debian native version/);
    expect(() => debVersion(" x")).toThrow(/not a Debian native version/);
  });

  it("the script exits 1 naming the bad version, before building anything", () => {
    const out = mkdtempSync(join(tmpdir(), "hs-deb-bad-"));
    try {
      const r = spawnSync(process.execPath, [join(repo, "helper/scripts/package-deb.mjs")], {
        encoding: "utf8",
        env: { ...process.env, HS_DEB_OUT: out, HS_DEB_VERSION_SUFFIX: "-1" },
      });
      expect(r.status).toBe(1);
      expect(r.stderr).toMatch(/^package-deb: "[^"]*-1" is not a Debian native version/);
      expect(readdirSync(out)).toEqual([]);
    } finally {
      rmSync(out, { recursive: true, force: true });
    }
  });
});

describe("the .deb built from this checkout", () => {
  let out: string;
  let deb: string;
  let extracted: string;
  let listing: Array<{ mode: string; owner: string; path: string; link?: string }>;
  let control: string;

  beforeAll(() => {
    out = mkdtempSync(join(tmpdir(), "hs-deb-"));
    // Through the script `npm run package:deb` runs. Offline: `npm ci` has filled the npm
    // cache, so the production set needs no network.
    const r = spawnSync(process.execPath, [join(repo, "helper/scripts/package-deb.mjs")], {
      encoding: "utf8",
      env: { ...process.env, HS_DEB_OUT: out, HS_DEB_VERSION_SUFFIX: "~unit1", HS_DEB_OFFLINE: "1" },
    });
    if (r.status !== 0) throw new Error(`package-deb.mjs failed (${r.status}): ${r.stderr}`);
    deb = /^package-deb: wrote (\S+) /m.exec(r.stderr)?.[1] ?? "";
    if (!existsSync(deb)) throw new Error(`package-deb.mjs said: ${r.stderr}`);
    listing = execFileSync("dpkg-deb", ["-c", deb], { encoding: "utf8", maxBuffer: 64 << 20 })
      .trim()
      .split("\n")
      .map((line) => {
        const f = line.split(/\s+/);
        const path = f[5]!.replace(/^\.\//, "/").replace(/(.)\/$/, "$1");
        return { mode: f[0]!, owner: f[1]!, path, ...(f[6] === "->" ? { link: f[7]! } : {}) };
      });
    control = execFileSync("dpkg-deb", ["-f", deb], { encoding: "utf8" });
    extracted = join(out, "x");
    execFileSync("dpkg-deb", ["-x", deb, extracted]);
  }, 120_000);
  afterAll(() => {
    if (out) rmSync(out, { recursive: true, force: true });
  });

  it("is named homelab-secrets_<version>_<arch>.deb", () => {
    const arch = execFileSync("dpkg", ["--print-architecture"], { encoding: "utf8" }).trim();
    expect(deb.split("/").at(-1)).toBe(`homelab-secrets_${debVersion("~unit1")}_${arch}.deb`);
    expect(control).toMatch(new RegExp(`^Architecture: ${arch}$`, "m"));
  });

  it("every entry is root:root, none writable by group or others, none set-id (postinst sets the wrapper's)", () => {
    expect(listing.length).toBeGreaterThan(50);
    expect(listing.filter((e) => e.owner !== "root/root").map((e) => e.path)).toEqual([]);
    expect(listing.filter((e) => !e.mode.startsWith("l") && /^.....w|^........w/.test(e.mode)).map((e) => `${e.mode} ${e.path}`)).toEqual(
      [],
    );
    expect(listing.filter((e) => /[sStT]/.test(e.mode)).map((e) => e.path)).toEqual([]);
    expect(listing.filter((e) => e.link).map((e) => e.path)).toEqual([]);
  });

  it("installs the CLI under /usr/lib/homelab-secrets, a launcher, the wrapper and the template unit", () => {
    const paths = new Set(listing.map((e) => e.path));
    for (const p of [
      cliPath,
      "/usr/lib/homelab-secrets/package.json",
      "/usr/bin/homelab-secrets",
      "/usr/bin/homelab-secrets-user",
      "/usr/lib/systemd/system/homelab-secrets@.service",
      "/usr/share/doc/homelab-secrets/copyright",
      "/usr/share/doc/homelab-secrets/debian.md",
      "/usr/share/doc/homelab-secrets/examples/plain-linux/myapp.service.d/homelab-secrets.conf",
    ]) {
      expect(paths, p).toContain(p);
    }
    expect([...paths].filter((p) => p.startsWith("/etc"))).toEqual([]);
    expect(readFileSync(join(extracted, "usr/bin/homelab-secrets"), "utf8")).toBe(`#!/bin/sh\nexec ${nodePath} ${cliPath} "$@"\n`);
    const wrapper = readFileSync(join(extracted, "usr/bin/homelab-secrets-user")).toString("latin1");
    for (const baked of [`${nodePath}\0`, `${cliPath}\0`, "/etc/homelab-secrets"]) expect(wrapper).toContain(baked);
    for (const unit of ["homelab-secrets@.service", "homelab-secrets-refresh@.service", "homelab-secrets-refresh@.timer"])
      expect(readFileSync(join(extracted, "usr/lib/systemd/system", unit), "utf8"), unit).toBe(
        readFileSync(join(repo, "packaging/systemd", unit), "utf8"),
      );
  });

  it("ships the credential agent: its front end where the units expect it, the socket and service as in examples/", () => {
    const paths = new Set(listing.map((e) => e.path));
    expect(paths).toContain("/usr/libexec/homelab-secrets/homelab-secrets-agent");
    const frontEnd = listing.find((e) => e.path === "/usr/libexec/homelab-secrets/homelab-secrets-agent")!;
    expect(frontEnd.mode).toMatch(/^-rwxr-xr-x$/);
    for (const unit of ["homelab-secrets-agent.socket", "homelab-secrets-agent.service", "homelab-secrets-agent-key.service"]) {
      expect(readFileSync(join(extracted, "usr/lib/systemd/system", unit), "utf8"), unit).toBe(
        readFileSync(join(repo, "examples/plain-linux/agent", unit), "utf8"),
      );
    }
    const service = readFileSync(join(extracted, "usr/lib/systemd/system/homelab-secrets-agent.service"), "utf8");
    expect(service).toContain("ExecStart=/usr/libexec/homelab-secrets/homelab-secrets-agent ");
    expect(service).toContain(" -- /usr/bin/homelab-secrets agent ");
  });

  it("depends on nodejs (>= 20) and the libc the wrapper was linked against", () => {
    const depends = /^Depends: (.*)$/m.exec(control)?.[1]?.split(/,\s*/) ?? [];
    expect(depends).toContain("nodejs (>= 20)");
    expect(depends.some((d) => /^libc6 \(>= 2\.\d+\)$/.test(d))).toBe(true);
    expect(control).toMatch(/^Version: .*~unit1$/m);
    expect(Number(/^Installed-Size: (\d+)$/m.exec(control)?.[1])).toBeGreaterThan(1000);
  });

  it("holds exactly the lockfile's production dependencies", () => {
    const lock = JSON.parse(readFileSync(join(repo, "package-lock.json"), "utf8")) as {
      packages: Record<string, { dev?: boolean; version?: string }>;
    };
    const want = Object.entries(lock.packages)
      .filter(([path, p]) => path.startsWith("node_modules/") && !p.dev)
      .map(([path, p]) => `${path.slice("node_modules/".length)}@${p.version}`)
      .sort();
    const modules = join(extracted, "usr/lib/homelab-secrets/node_modules");
    const found: string[] = [];
    const scan = (dir: string, prefix: string) => {
      for (const name of readdirSync(dir)) {
        if (name.startsWith(".")) continue;
        const path = join(dir, name);
        if (name.startsWith("@")) {
          scan(path, `${prefix}${name}/`);
          continue;
        }
        const version = (JSON.parse(readFileSync(join(path, "package.json"), "utf8")) as { version: string }).version;
        found.push(`${prefix}${name}@${version}`);
        if (existsSync(join(path, "node_modules"))) scan(join(path, "node_modules"), `${prefix}${name}/node_modules/`);
      }
    };
    scan(modules, "");
    expect(want.length).toBeGreaterThan(0);
    expect(found.sort()).toEqual(want);
  });

  it("the extracted CLI runs the bundled demo with only what the package holds", () => {
    const cli = join(extracted, cliPath);
    expect(execFileSync(process.execPath, [cli, "--version"], { encoding: "utf8" }).trim()).toBe(
      (JSON.parse(readFileSync(join(repo, "package.json"), "utf8")) as { version: string }).version,
    );
    const demoOut = join(out, "demo-out");
    const r = execFileSync(process.execPath, [cli, "demo", "--output-dir", demoOut], { encoding: "utf8", cwd: out });
    expect(r).toMatch(/wrote 4 file\(s\)/);
  });

  it("carries the maintainer scripts of packaging/deb, executable and valid POSIX sh", () => {
    const ctrl = join(out, "DEBIAN");
    execFileSync("dpkg-deb", ["-e", deb, ctrl]);
    for (const script of ["postinst", "prerm", "postrm"]) {
      expect(readFileSync(join(ctrl, script), "utf8"), script).toBe(readFileSync(join(repo, "packaging/deb", script), "utf8"));
      expect(statSync(join(ctrl, script)).mode & 0o777, script).toBe(0o755);
      execFileSync("sh", ["-n", join(ctrl, script)]);
    }
  });
});
