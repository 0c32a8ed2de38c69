/**
 * `homelab-secrets doctor`: check a host's per-user setup — one line per check, "ok",
 * "WARN" (not checked; exit stays 0) or "UNSAFE" (exit 78). Reads only metadata (and
 * config.json), and runs the wrapper's CLI once as the service account (`--version`).
 */
import { execFileSync } from "node:child_process";
import { existsSync, readFileSync, statSync, type Stats } from "node:fs";
import { join } from "node:path";
import { connectHostFinding } from "../sources/loopback.js";
import { parseHostConfig as parseHostSource } from "../user/host-config.js";
import { lookupUid, primaryGidOf } from "../accounts.js";
import { accessibleToOthers, writableByOthers } from "../file-rules.js";
import { defaultCacheMarkerDir, nixosWrapperPath, packageWrapperPath } from "../host-paths.js";
import { humanAge } from "../cache/age.js";
import { listMarkers } from "../cache/marker.js";
import { parseHostSettings } from "../user/host-config.js";
import { checkCliTree, checkNodeBinary, type TreeVerdict } from "../user/tree-check.js";

/** `doctor`'s flags. */
export interface DoctorArgs {
  "config-dir": string;
  wrapper?: string;
  "service-user": string;
  "cache-marker-dir": string;
}

/** One check's verdict. */
export interface Finding {
  /** false: unsafe (doctor exits 78). */
  readonly ok: boolean;
  /** ok, but not checked: shown as WARN. */
  readonly warn?: boolean;
  readonly what: string;
  readonly detail: string;
}

const octal = (mode: number) => `0${(mode & 0o7777).toString(8).padStart(3, "0")}`;

/** Every check, in order; nothing is changed on the host. */
export function runDoctor(options: {
  configDir: string;
  wrapper?: string | undefined;
  serviceUser: string;
  /** Where `fetch --cache` records services running on cached values (default /run/homelab-secrets/cached). */
  markerDir?: string;
  now?: number;
}): Finding[] {
  const findings: Finding[] = [];
  const ok = (what: string, detail: string) => findings.push({ ok: true, what, detail });
  const warn = (what: string, detail: string) => findings.push({ ok: true, warn: true, what, detail });
  const unsafe = (what: string, detail: string) => findings.push({ ok: false, what, detail });

  let svcUid: number | undefined;
  let svcGid: number | undefined;
  try {
    svcUid = lookupUid(options.serviceUser);
    svcGid = primaryGidOf(svcUid);
    if (svcUid === 0) unsafe("service account", `${options.serviceUser} is root; use an unprivileged account`);
    else ok("service account", `${options.serviceUser} (uid ${svcUid}, gid ${svcGid ?? "?"})`);
  } catch {
    unsafe("service account", `${options.serviceUser} does not exist (--service-user NAME)`);
  }

  const stat = (what: string, path: string, optional = false): Stats | undefined => {
    try {
      return statSync(path);
    } catch (error) {
      const code = (error as NodeJS.ErrnoException).code;
      if (optional && code === "ENOENT") ok(what, `${path} absent (optional)`);
      else unsafe(what, `${path}: ${code === "ENOENT" ? "missing" : code}`);
      return undefined;
    }
  };
  const problems = (checks: [boolean, string][]) => checks.filter(([bad]) => bad).map(([, why]) => why);
  const report = (what: string, path: string, stats: Stats, why: string[]) => {
    const summary = `${path} (owner ${stats.uid}:${stats.gid}, mode ${octal(stats.mode)})`;
    if (why.length === 0) ok(what, summary);
    else unsafe(what, `${summary}: ${why.join("; ")}`);
  };

  const dir = options.configDir;
  const dirStats = stat("config directory", dir);
  if (dirStats) {
    report(
      "config directory",
      dir,
      dirStats,
      problems([
        [!dirStats.isDirectory(), "not a directory"],
        [dirStats.uid !== 0, "not owned by root"],
        [writableByOthers(dirStats), "writable by group or others"],
      ]),
    );
  }

  const mapfilePath = join(dir, "mapfile");
  const mapfile = stat("mapfile", mapfilePath);
  if (mapfile) {
    report(
      "mapfile",
      mapfilePath,
      mapfile,
      problems([
        [!mapfile.isFile(), "not a regular file"],
        [mapfile.uid !== 0, "not owned by root"],
        [svcGid !== undefined && mapfile.gid !== svcGid, `group is not ${options.serviceUser}'s group`],
        [writableByOthers(mapfile), "writable by group or others"],
        [(mapfile.mode & 0o040) === 0, "not readable by the service group (want 0640)"],
        [(mapfile.mode & 0o007) !== 0, "readable by others: every user could see every mapping (want 0640)"],
      ]),
    );
  }

  const configPath = join(dir, "config.json");
  // Whether runs spend the token's quota under a per-user rate limit (the default source does).
  let usesToken = true;
  // Whether the source reads the token at all (every source but the file source does).
  let needsToken = true;
  const config = stat("config.json", configPath, true);
  if (config) {
    const why = problems([
      [!config.isFile(), "not a regular file"],
      [config.uid !== 0, "not owned by root"],
      [writableByOthers(config), "writable by group or others"],
    ]);
    let vaultPath: string | undefined;
    if (config.isFile()) {
      try {
        const settings = parseHostSettings(readFileSync(configPath, "utf8"), configPath);
        const source = settings.source;
        usesToken = source.type !== "file" && settings.userRateLimit !== null;
        needsToken = source.type !== "file";
        if (why.length === 0) ok("config.json", `${configPath}: source ${source.type}`);
        if (source.type === "file") vaultPath = source.path;
      } catch (error) {
        why.push((error as Error).message);
      }
    }
    if (why.length > 0) report("config.json", configPath, config, why);
    // A file-source vault holds values: only root and the service account may read it.
    const vault = vaultPath === undefined ? undefined : stat("vault", vaultPath);
    if (vault && vaultPath !== undefined) {
      report(
        "vault",
        vaultPath,
        vault,
        problems([
          [!vault.isFile(), "not a regular file"],
          [vault.uid !== 0 && vault.uid !== svcUid, `not owned by root or ${options.serviceUser}`],
          [writableByOthers(vault), "writable by group or others"],
          [(vault.mode & 0o004) !== 0, "readable by others: every user could read every value (want 0640 root:<service group> or 0600)"],
          [
            (vault.mode & 0o040) !== 0 && svcGid !== undefined && vault.gid !== svcGid && vault.uid !== svcUid,
            "readable by a group other than the service account's",
          ],
        ]),
      );
    }
  }

  const tokenPath = join(dir, "token");
  const tokenAbsent = !needsToken && !existsSync(tokenPath);
  if (tokenAbsent) ok("token", `${tokenPath} absent (not needed: the file source reads no token)`);
  const token = tokenAbsent ? undefined : stat("token", tokenPath);
  if (token) {
    report(
      "token",
      tokenPath,
      token,
      problems([
        [!token.isFile(), "not a regular file"],
        [svcUid !== undefined && token.uid !== svcUid, `not owned by ${options.serviceUser}`],
        [accessibleToOthers(token), "accessible to group or others (want 0600)"],
      ]),
    );
  }

  findings.push(...connectHostFindings(configPath, svcUid, options.serviceUser));

  const wrapper = options.wrapper ?? [nixosWrapperPath, packageWrapperPath].find((p) => existsSync(p));
  if (wrapper === undefined) {
    warn("wrapper", `not checked: none at ${nixosWrapperPath} or ${packageWrapperPath} (give --wrapper PATH)`);
  } else {
    const w = stat("wrapper", wrapper);
    if (w) {
      report(
        "wrapper",
        wrapper,
        w,
        problems([
          [!w.isFile(), "not a regular file"],
          [(w.mode & 0o4000) === 0, "not set-user-ID"],
          [(w.mode & 0o2000) === 0, "not set-group-ID"],
          [w.uid === 0, "set-user-ID root: install it SUID+SGID to the service account instead"],
          [svcUid !== undefined && w.uid !== svcUid, `not owned by ${options.serviceUser}`],
          [svcGid !== undefined && w.gid !== svcGid, `group is not ${options.serviceUser}'s group`],
          [writableByOthers(w), "writable by group or others"],
        ]),
      );
      checkBuild(wrapper, { uid: svcUid, gid: svcGid, name: options.serviceUser }, usesToken, ok, unsafe);
    }
  }
  findings.push(...cachedValueFindings(options.markerDir ?? defaultCacheMarkerDir, options.now ?? Date.now()));
  return findings;
}

/** One WARN per spec whose outputs came from the cache because its backend failed (none: no line). */
export function cachedValueFindings(markerDir: string, now: number): Finding[] {
  return listMarkers(markerDir).map(({ name, marker }) => ({
    ok: true,
    warn: true,
    what: "cached values",
    detail:
      marker === undefined
        ? `${name} runs on cached values (its marker in ${markerDir} is unreadable)`
        : `${name} runs on values fetched ${humanAge(now - marker.storedAt)} ago, since ${new Date(marker.since).toISOString()}: ${marker.reason}`,
  }));
}

/**
 * What the wrapper was built against (its --build-info): node and the CLI tree must pass
 * the wrapper's own run-time rule, and its rate-limit state directory must be the service
 * account's.
 */
function checkBuild(
  wrapper: string,
  svc: { uid: number | undefined; gid: number | undefined; name: string },
  usesToken: boolean,
  ok: (what: string, detail: string) => void,
  unsafe: (what: string, detail: string) => void,
): void {
  let info: Map<string, string>;
  try {
    const text = execFileSync(wrapper, ["--build-info"], { encoding: "utf8", env: {}, stdio: ["ignore", "pipe", "pipe"], timeout: 10_000 });
    info = new Map(
      text
        .split("\n")
        .filter((l) => l.includes("="))
        .map((l) => [l.slice(0, l.indexOf("=")), l.slice(l.indexOf("=") + 1)]),
    );
  } catch (error) {
    unsafe("wrapper build", `${wrapper} --build-info failed: ${(error as Error).message.split("\n")[0]}`);
    return;
  }
  /** true when the path passed. */
  const report = (what: string, path: string | undefined, check: (p: string) => TreeVerdict): boolean => {
    if (path === undefined) {
      unsafe(what, `${wrapper} --build-info names no ${what}`);
      return false;
    }
    const started = performance.now();
    const verdict = check(path);
    const ms = (performance.now() - started).toFixed(1);
    if (verdict.problem === undefined) ok(what, `${path}: root's, ${verdict.entries} entries checked in ${ms} ms`);
    else unsafe(what, `${verdict.problem} (the wrapper refuses to run: 78)`);
    return verdict.problem === undefined;
  };
  const node = info.get("node");
  const cli = info.get("cli");
  const nodeSafe = report("node", node, checkNodeBinary);
  const cliSafe = report("cli tree", cli, checkCliTree);
  if (nodeSafe && cliSafe && node !== undefined && cli !== undefined && svc.uid !== undefined && svc.gid !== undefined) {
    const problem = runsAs(node, cli, svc.uid, svc.gid);
    if (problem === undefined) ok("cli as service account", `${node} ${cli} --version runs as ${svc.name}`);
    else unsafe("cli as service account", `${svc.name} cannot run ${cli} with ${node}: ${problem}`);
  }
  const svcUid = svc.uid;
  const stateDir = info.get("state-dir");
  if (stateDir === undefined) return unsafe("rate-limit state", `${wrapper} --build-info names no state-dir`);
  let st: Stats | undefined;
  try {
    st = statSync(stateDir);
  } catch {
    /* absent */
  }
  if (st === undefined) {
    if (usesToken)
      unsafe("rate-limit state", `${stateDir} missing: the per-user rate limit is off (create it 0700, owned by the service account)`);
    else ok("rate-limit state", `${stateDir} absent (not needed: no token quota to protect)`);
    return;
  }
  const why = [
    !st.isDirectory() ? "not a directory" : "",
    svcUid !== undefined && st.uid !== svcUid ? "not owned by the service account" : "",
    accessibleToOthers(st) ? "accessible to group or others (want 0700)" : "",
  ].filter(Boolean);
  const summary = `${stateDir} (owner ${st.uid}:${st.gid}, mode ${octal(st.mode)})`;
  if (why.length === 0) ok("rate-limit state", summary);
  else unsafe("rate-limit state", `${summary}: ${why.join("; ")}`);
}

/**
 * Run the wrapper's node and CLI as the service account, as the wrapper's fetcher does (no
 * environment, cwd /): undefined when `--version` exits 0, else why not, in one line.
 */
function runsAs(node: string, cli: string, uid: number, gid: number): string | undefined {
  try {
    execFileSync(node, [cli, "--version"], { uid, gid, cwd: "/", env: {}, stdio: ["ignore", "ignore", "pipe"], timeout: 20_000 });
    return undefined;
  } catch (error) {
    const failed = error as { status?: number | null; stderr?: Buffer; code?: string; message: string };
    const lines = (failed.stderr?.toString("utf8") ?? "").split("\n").filter((l) => l.trim() !== "");
    // Node's own errors name the file it could not load (EACCES, MODULE_NOT_FOUND) in the first lines.
    const why = lines.find((l) => /^Error|EACCES|ENOENT|Cannot find/.test(l.trim())) ?? lines[0] ?? failed.code ?? failed.message;
    return `${failed.status === undefined || failed.status === null ? "" : `exit ${failed.status}: `}${why.trim()}`;
  }
}

/** doctor's output: one line per finding. */
export function formatFindings(findings: readonly Finding[]): string {
  return findings.map((f) => `${f.ok ? (f.warn ? "WARN  " : "ok    ") : "UNSAFE"}  ${f.what}: ${f.detail}\n`).join("");
}

/**
 * A plain-http Connect source in config.json: who may receive the token. On loopback the
 * server listening now must be root's, the service account's or source.listenerUser's (the
 * fetch itself refuses anyone else); elsewhere the token would cross the network unencrypted.
 */
function connectHostFindings(configPath: string, svcUid: number | undefined, serviceUser: string): Finding[] {
  let source: ReturnType<typeof parseHostSource>;
  try {
    source = parseHostSource(readFileSync(configPath, "utf8"), configPath);
  } catch {
    return []; // absent or broken: reported with config.json
  }
  if (source.type !== "connect") return [];
  const uids = new Set([0, ...(svcUid !== undefined ? [svcUid] : [])]);
  let describe = `root, ${serviceUser}`;
  if (source.listenerUser !== undefined) {
    try {
      uids.add(lookupUid(source.listenerUser));
      describe += ` or ${String(source.listenerUser)}`;
    } catch {
      return [{ ok: false, what: "connect host", detail: `source.listenerUser ${String(source.listenerUser)} does not exist` }];
    }
  }
  const finding = connectHostFinding(source.host, { uids, describe });
  return [{ ok: finding.ok, what: "connect host", detail: finding.detail }];
}
