#!/usr/bin/env node
// Build the Debian package from this checkout (after `npm run build`):
//
//   node helper/scripts/package-deb.mjs        -> build/deb/homelab-secrets_<version>_<arch>.deb
//   HS_DEB_VERSION_SUFFIX=~rc1                 appended to package.json's version
//   HS_DEB_OUT=DIR                             a different output directory
//   HS_DEB_OFFLINE=1                           production deps from the npm cache only
//
// Layout: the CLI with its production dependencies (from package-lock.json, `npm ci
// --omit=dev`) in /usr/lib/homelab-secrets, a launcher /usr/bin/homelab-secrets, the wrapper
// /usr/bin/homelab-secrets-user (SUID/SGID set by postinst through dpkg-statoverride), the
// template units (secrets, refresh) in /usr/lib/systemd/system. Everything is root-owned (dpkg-deb
// --root-owner-group) and closed to group/other writes: the wrapper refuses anything else.
import { execFileSync } from "node:child_process";
import { createHash } from "node:crypto";
import {
  chmodSync,
  copyFileSync,
  cpSync,
  existsSync,
  lstatSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  statSync,
  writeFileSync,
} from "node:fs";
import { dirname, join, relative, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { gzipSync } from "node:zlib";
import { buildAgent } from "./build-agent.mjs";
import { buildWrapper } from "./build-wrapper.mjs";

const root = resolve(dirname(fileURLToPath(import.meta.url)), "../..");
export const libDir = "/usr/lib/homelab-secrets";
export const cliPath = `${libDir}/helper/dist/cli.js`;
export const nodePath = "/usr/bin/node";
export const configDir = "/etc/homelab-secrets";

/** The Debian version: package.json's version plus an optional suffix (checked against Debian's syntax). */
export function debVersion(suffix = "") {
  const { version } = JSON.parse(readFileSync(join(root, "package.json"), "utf8"));
  const full = `${version}${suffix}`;
  // A native package: no revision, so no "-"; upstream version starts with a digit.
  if (!/^[0-9][A-Za-z0-9.+~]*$/.test(full)) throw new Error(`"${full}" is not a Debian native version (digits first, then A-Za-z0-9.+~)`);
  return full;
}

/** Walk a tree: every path below dir, directories before their contents. */
function walk(dir) {
  const out = [];
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const path = join(dir, entry.name);
    out.push(path);
    if (entry.isDirectory()) out.push(...walk(path));
  }
  return out;
}

/** 0755 for directories and executables, 0644 for the rest; refuses set-id bits and foreign symlinks. */
function normalizeModes(tree) {
  chmodSync(tree, 0o755);
  for (const path of walk(tree)) {
    const st = lstatSync(path);
    if (st.isSymbolicLink()) continue;
    if (st.mode & 0o7000) throw new Error(`${relative(tree, path)} has a set-id or sticky bit`);
    chmodSync(path, st.isDirectory() || st.mode & 0o111 ? 0o755 : 0o644);
  }
}

/** Production dependencies exactly as package-lock.json pins them, installed without scripts. */
function installProductionDeps(appDir, offline) {
  copyFileSync(join(root, "package.json"), join(appDir, "package.json"));
  copyFileSync(join(root, "package-lock.json"), join(appDir, "package-lock.json"));
  execFileSync(
    "npm",
    ["ci", "--omit=dev", "--ignore-scripts", "--no-audit", "--no-fund", "--loglevel=error", offline ? "--offline" : "--prefer-offline"],
    { cwd: appDir, stdio: ["ignore", "ignore", "inherit"], env: { ...process.env, npm_config_update_notifier: "false" } },
  );
  rmSync(join(appDir, "package-lock.json"));
  rmSync(join(appDir, "node_modules/.package-lock.json"), { force: true });
  rmSync(join(appDir, "node_modules/.bin"), { recursive: true, force: true });
}

/** The newest glibc symbol version the binary needs, as a Depends: entry. */
function libcDependency(binary) {
  const symbols = execFileSync("objdump", ["-T", binary], { encoding: "utf8" });
  const versions = [...symbols.matchAll(/GLIBC_([0-9]+(?:\.[0-9]+)*)/g)].map((m) => m[1]);
  if (versions.length === 0) throw new Error(`${binary}: no glibc symbol versions found`);
  const newest = versions
    .sort((a, b) => {
      const [x, y] = [a.split(".").map(Number), b.split(".").map(Number)];
      for (let i = 0; i < Math.max(x.length, y.length); i++) if ((x[i] ?? 0) !== (y[i] ?? 0)) return (x[i] ?? 0) - (y[i] ?? 0);
      return 0;
    })
    .at(-1);
  return `libc6 (>= ${newest})`;
}

function md5sums(tree) {
  return walk(tree)
    .filter((p) => lstatSync(p).isFile())
    .map((p) => `${createHash("md5").update(readFileSync(p)).digest("hex")}  ${relative(tree, p)}\n`)
    .join("");
}

function installedSizeKiB(tree) {
  let bytes = 0;
  for (const p of walk(tree)) {
    const st = lstatSync(p);
    bytes += st.isFile() ? Math.ceil(st.size / 1024) * 1024 : 1024;
  }
  return Math.ceil(bytes / 1024);
}

/**
 * Build the .deb.
 * @param {{ versionSuffix?: string, outDir?: string, offline?: boolean }} [options]
 * @returns {{ path: string, version: string, arch: string, bytes: number }}
 */
export function packageDeb(options = {}) {
  const version = debVersion(options.versionSuffix ?? "");
  const arch = execFileSync("dpkg", ["--print-architecture"], { encoding: "utf8" }).trim();
  const outDir = resolve(options.outDir ?? join(root, "build/deb"));
  const dist = join(root, "helper/dist");
  if (!existsSync(join(dist, "cli.js"))) throw new Error(`${join(dist, "cli.js")} is missing: run npm run build first`);
  for (const f of ["LICENSE", "CHANGELOG.md", "docs/debian.md"]) {
    if (!existsSync(join(root, f))) throw new Error(`${f} is missing`);
  }

  mkdirSync(outDir, { recursive: true });
  const stage = mkdtempSync(join(outDir, ".stage-"));
  try {
    const tree = join(stage, "root");
    const app = join(tree, libDir);
    mkdirSync(join(app, "helper"), { recursive: true });
    installProductionDeps(app, options.offline ?? false);
    cpSync(dist, join(app, "helper/dist"), { recursive: true, filter: (src) => !/\.d\.ts(\.map)?$/.test(src) });
    cpSync(join(root, "examples/demo"), join(app, "examples/demo"), { recursive: true });

    mkdirSync(join(tree, "usr/bin"), { recursive: true });
    writeFileSync(join(tree, "usr/bin/homelab-secrets"), `#!/bin/sh\nexec ${nodePath} ${cliPath} "$@"\n`, { mode: 0o755 });
    const wrapper = buildWrapper({ node: nodePath, cli: cliPath, configDir, out: join(tree, "usr/bin/homelab-secrets-user") });

    const units = join(tree, "usr/lib/systemd/system");
    mkdirSync(units, { recursive: true });
    // The secrets template, and the refresh templates (installed, not enabled).
    for (const unit of ["homelab-secrets@.service", "homelab-secrets-refresh@.service", "homelab-secrets-refresh@.timer"]) {
      copyFileSync(join(root, "packaging/systemd", unit), join(units, unit));
    }
    // The credential agent: its front end where the shipped units expect it; the units are
    // installed, not enabled (`systemctl enable --now homelab-secrets-agent.socket` opts in).
    buildAgent({ out: join(tree, "usr/libexec/homelab-secrets/homelab-secrets-agent") });
    for (const unit of ["homelab-secrets-agent.socket", "homelab-secrets-agent.service", "homelab-secrets-agent-key.service"]) {
      copyFileSync(join(root, "examples/plain-linux/agent", unit), join(units, unit));
    }

    const doc = join(tree, "usr/share/doc/homelab-secrets");
    mkdirSync(join(doc, "examples"), { recursive: true });
    writeFileSync(join(doc, "copyright"), `Files: *\nLicense: MIT\n\n${readFileSync(join(root, "LICENSE"), "utf8")}`);
    writeFileSync(join(doc, "changelog.gz"), gzipSync(readFileSync(join(root, "CHANGELOG.md")), { level: 9 }));
    copyFileSync(join(root, "docs/debian.md"), join(doc, "debian.md"));
    cpSync(join(root, "examples/plain-linux"), join(doc, "examples/plain-linux"), { recursive: true });
    cpSync(join(root, "examples/demo"), join(doc, "examples/demo"), { recursive: true });

    normalizeModes(tree);

    const control = join(tree, "DEBIAN");
    mkdirSync(control);
    const fields = { VERSION: version, ARCH: arch, INSTALLED_SIZE: String(installedSizeKiB(tree)), LIBC: libcDependency(wrapper) };
    const text = readFileSync(join(root, "packaging/deb/control.in"), "utf8").replace(/@([A-Z_]+)@/g, (_, k) => {
      if (!(k in fields)) throw new Error(`control.in: unknown field @${k}@`);
      return fields[k];
    });
    writeFileSync(join(control, "control"), text);
    writeFileSync(join(control, "md5sums"), md5sums(tree));
    for (const script of ["postinst", "prerm", "postrm"]) {
      copyFileSync(join(root, "packaging/deb", script), join(control, script));
      chmodSync(join(control, script), 0o755);
    }
    chmodSync(control, 0o755);
    chmodSync(join(control, "control"), 0o644);
    chmodSync(join(control, "md5sums"), 0o644);

    const path = join(outDir, `homelab-secrets_${version}_${arch}.deb`);
    execFileSync("dpkg-deb", ["--root-owner-group", "-Zxz", "--build", tree, path], { stdio: ["ignore", "ignore", "inherit"] });
    return { path, version, arch, bytes: statSync(path).size };
  } finally {
    rmSync(stage, { recursive: true, force: true });
  }
}

if (process.argv[1] && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  try {
    const started = Date.now();
    const built = packageDeb({
      versionSuffix: process.env.HS_DEB_VERSION_SUFFIX || "",
      outDir: process.env.HS_DEB_OUT || undefined,
      offline: process.env.HS_DEB_OFFLINE === "1",
    });
    process.stderr.write(`package-deb: wrote ${built.path} (${(built.bytes / 1024).toFixed(0)} KiB, ${Date.now() - started} ms)\n`);
  } catch (error) {
    process.stderr.write(`package-deb: ${error instanceof Error ? error.message : String(error)}\n`);
    process.exit(1);
  }
}
