/**
 * Turn the Nix module's golden output (tests/golden/units.json) into files in a container
 * root, the way NixOS would: one unit file per unit under /etc/systemd/system,
 * `[Section]` + `Key=value` lines (a list becomes repeated lines), `wantedBy`/`requiredBy`
 * as symlinks in `<unit>.wants/` / `<unit>.requires/`, tmpfiles rules in /etc/tmpfiles.d,
 * store paths mapped to where the helper is installed in the container. (`wrappers`, the
 * SUID user-mode wrapper, is installed by user.test.ts itself, the way security.wrappers does.)
 */
import { chmodSync, existsSync, mkdirSync, readFileSync, symlinkSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";

export type UnitValue = string | number | boolean | Array<string | number | boolean>;
export type UnitSections = Record<string, Record<string, UnitValue>>;

export interface EtcEntry {
  text: string;
  mode?: string;
  user?: string;
  group?: string;
}

export interface Golden {
  storePaths: Record<string, string>;
  files: Record<string, string>;
  units: Record<string, UnitSections>;
  etc?: Record<string, EtcEntry>;
  /** systemd-tmpfiles lines (NixOS: systemd.tmpfiles.rules) */
  tmpfiles?: string[];
  /** security.wrappers entries */
  wrappers?: Record<string, { source: string; owner: string; group: string; permissions: string; setuid: boolean; setgid: boolean }>;
}

/**
 * Where each store path named in `storePaths` lives inside the container:
 * - `package`: the helper, installed by scenario.ts under /opt/homelab-secrets;
 * - `systemd`: the systemd package (the secrets units run `<systemd>/bin/systemctl`): the
 *   container's own systemd, whose binaries Debian keeps under /usr (/usr/bin/systemctl);
 * - `coreutils`, `findutils`, `gnugrep`, `gnused`: the default PATH NixOS gives every service
 *   (`Environment="PATH=…/bin:…/sbin"`): Debian's, under /usr.
 */
export const containerPathFor: Record<string, string> = {
  package: "/opt/homelab-secrets",
  systemd: "/usr",
  coreutils: "/usr",
  findutils: "/usr",
  gnugrep: "/usr",
  gnused: "/usr",
};

export function loadGolden(path: string): Golden {
  const golden = JSON.parse(readFileSync(path, "utf8")) as Golden;
  for (const key of ["storePaths", "files", "units"] as const) {
    if (typeof golden[key] !== "object" || golden[key] === null) throw new Error(`${path}: missing "${key}"`);
  }
  return golden;
}

/** Replace every store path in `storePaths` by its container location (longest first). */
export function mapStorePaths(text: string, golden: Golden): string {
  const pairs = Object.entries(golden.storePaths).sort((a, b) => b[1].length - a[1].length);
  for (const [name, storePath] of pairs) {
    const target = containerPathFor[name];
    if (!target) throw new Error(`golden storePaths.${name} (${storePath}) has no container location; add one to containerPathFor`);
    text = text.split(storePath).join(target);
  }
  return text;
}

const renderValue = (v: string | number | boolean) => (typeof v === "boolean" ? (v ? "true" : "false") : String(v));

export function renderUnit(sections: UnitSections): string {
  const out: string[] = [];
  for (const [section, keys] of Object.entries(sections)) {
    out.push(`[${section}]`);
    for (const [key, value] of Object.entries(keys)) {
      for (const v of Array.isArray(value) ? value : [value]) out.push(`${key}=${renderValue(v)}`);
    }
    out.push("");
  }
  return out.join("\n");
}

const values = (v: UnitValue | undefined): string[] =>
  v === undefined ? [] : (Array.isArray(v) ? v : [v]).flatMap((x) => renderValue(x).split(/\s+/)).filter(Boolean);

/**
 * Write units, spec files and /etc entries below `root`. Install links to targets are not
 * made: the tests start every unit themselves, nothing should run on its own at boot.
 * Returns the container paths of the unit files.
 */
export function installGolden(root: string, golden: Golden): string[] {
  const put = (path: string, content: string, mode = 0o644) => {
    const host = join(root, path);
    mkdirSync(dirname(host), { recursive: true });
    writeFileSync(host, content);
    chmodSync(host, mode);
  };
  // A script (writeShellScript's "#!") is executable in the store, 0555; everything else 0444.
  for (const [path, content] of Object.entries(golden.files))
    put(mapStorePaths(path, golden), mapStorePaths(content, golden), content.startsWith("#!") ? 0o555 : 0o444);
  const unitDir = "/etc/systemd/system";
  const paths: string[] = [];
  for (const [name, sections] of Object.entries(golden.units)) {
    const path = `${unitDir}/${name}`;
    put(path, mapStorePaths(renderUnit(sections), golden));
    paths.push(path);
    for (const [key, suffix] of [
      ["WantedBy", "wants"],
      ["RequiredBy", "requires"],
    ] as const) {
      for (const target of values(sections["Install"]?.[key])) {
        if (target.endsWith(".target")) continue;
        const link = join(root, unitDir, `${target}.${suffix}`, name);
        mkdirSync(dirname(link), { recursive: true });
        if (!existsSync(link)) symlinkSync(path, link);
      }
    }
  }
  if (golden.tmpfiles?.length)
    put("/etc/tmpfiles.d/00-homelab-secrets-golden.conf", mapStorePaths(golden.tmpfiles.join("\n") + "\n", golden));
  for (const [path, entry] of Object.entries(golden.etc ?? {}))
    put(`/etc/${path}`, mapStorePaths(entry.text, golden), parseInt(entry.mode ?? "0644", 8));
  return paths;
}

/** Users and groups the units and /etc entries name (DynamicUser units excluded). */
export function namedAccounts(
  golden: Golden,
  specs: Array<{ owner?: string; group?: string }>,
): { users: Set<string>; groups: Set<string> } {
  const users = new Set<string>();
  const groups = new Set<string>();
  for (const sections of Object.values(golden.units)) {
    const s = sections["Service"] ?? {};
    if (values(s["DynamicUser"])[0]?.match(/^(yes|true|1|on)$/)) continue;
    for (const u of values(s["User"])) users.add(u);
    for (const g of [...values(s["Group"]), ...values(s["SupplementaryGroups"])]) groups.add(g);
  }
  for (const e of [...Object.values(golden.etc ?? {}), ...specs.map((s) => ({ user: s.owner, group: s.group }))]) {
    if (e.user) users.add(e.user);
    if (e.group) groups.add(e.group);
  }
  for (const builtin of ["root", "nobody"]) users.delete(builtin);
  for (const builtin of ["root", "nogroup"]) groups.delete(builtin);
  return { users, groups };
}

export interface Spec {
  version: number;
  name: string;
  outputDir: string;
  owner?: string;
  group?: string;
  dirMode?: string;
  source?: { type: string; [k: string]: unknown };
  files?: Record<string, { ref: string; mode?: string }>;
  envFiles?: Record<string, { mode?: string; vars: Record<string, string> }>;
  templates?: Record<string, { mode?: string; content: string }>;
}

/** The spec files among `golden.files`, keyed by their container path. */
export function specsOf(golden: Golden): Map<string, Spec> {
  const specs = new Map<string, Spec>();
  for (const [path, content] of Object.entries(golden.files)) {
    try {
      const spec = JSON.parse(content) as Spec;
      if (spec && spec.version === 1 && typeof spec.outputDir === "string") specs.set(mapStorePaths(path, golden), spec);
    } catch {
      /* not JSON: not a spec */
    }
  }
  return specs;
}

/** The spec a unit's ExecStart/ExecStartPre lines point at (`--spec PATH`), if any. */
export function specOfUnit(golden: Golden, unit: string): Spec | undefined {
  const s = golden.units[unit]?.["Service"] ?? {};
  const lines = [...values(s["ExecStart"]), ...values(s["ExecStartPre"])].join(" ");
  const specs = specsOf(golden);
  const m = mapStorePaths(lines, golden).match(/--spec[= ](\S+)/);
  return m ? specs.get(m[1]!) : undefined;
}

/** Every `LoadCredential=NAME:PATH` in the units. */
export function credentialFiles(golden: Golden): Map<string, string> {
  const creds = new Map<string, string>();
  for (const sections of Object.values(golden.units)) {
    for (const line of values(sections["Service"]?.["LoadCredential"])) {
      const i = line.indexOf(":");
      if (i > 0) creds.set(line.slice(0, i), line.slice(i + 1));
    }
  }
  return creds;
}

export function unitValues(golden: Golden, unit: string, section: string, key: string): string[] {
  const v = golden.units[unit]?.[section]?.[key];
  return v === undefined ? [] : (Array.isArray(v) ? v : [v]).map(renderValue);
}

/** `--deadline N` from a unit's ExecStart (the CLI's default, 45, otherwise). */
export function deadlineOf(golden: Golden, unit: string): number {
  return Number(
    unitValues(golden, unit, "Service", "ExecStart")
      .join(" ")
      .match(/--deadline[= ](\d+)/)?.[1] ?? 45,
  );
}
