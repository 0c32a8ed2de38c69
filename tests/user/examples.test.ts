/**
 * The per-user examples that cannot run here (no Podman, no Docker), checked for what can be
 * checked without them: the quadlet is well-formed INI with the keys quadlet reads, the
 * Compose file is YAML with a file secret, every path they name is one the mapfile example
 * writes for the right user, every wrapper command line is accepted by the CLI, and the
 * Debian package installs the wrapper they call and ships them. The system service, cron job
 * and user service run for real in tests/e2e/per-user-examples.test.ts.
 */
import { execFileSync } from "node:child_process";
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { execa } from "execa";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { packageDeb } from "../../helper/scripts/package-deb.mjs";
import { parseMapfileStrict, type MapEntry } from "../../helper/src/mapfile.js";
import { cliPath, repoRoot } from "./harness.js";
import yaml from "js-yaml";

const dir = join(repoRoot, "examples/plain-linux/per-user");
const text = (name: string) => readFileSync(join(dir, name), "utf8");
const wrapper = "/usr/bin/homelab-secrets-user";
const entries: readonly MapEntry[] = parseMapfileStrict(text("mapfile"), "mapfile");

/** systemd's unit-file syntax: [Section] headers and Key=Value lines; comments and blanks skipped. */
function parseUnit(source: string, file: string): Map<string, [string, string][]> {
  const sections = new Map<string, [string, string][]>();
  let current: [string, string][] | undefined;
  for (const [i, raw] of source.split("\n").entries()) {
    const line = raw.trim();
    if (line === "" || line.startsWith("#") || line.startsWith(";")) continue;
    const header = /^\[([A-Za-z]+)\]$/.exec(line);
    if (header) {
      if (sections.has(header[1]!)) throw new Error(`${file}:${i + 1}: section [${header[1]}] twice`);
      current = [];
      sections.set(header[1]!, current);
      continue;
    }
    const kv = /^([A-Za-z][A-Za-z0-9]*)=(.*)$/.exec(line);
    if (!kv || !current) throw new Error(`${file}:${i + 1}: not a Key=Value line inside a section: ${line}`);
    current.push([kv[1]!, kv[2]!]);
  }
  return sections;
}
const values = (unit: Map<string, [string, string][]>, section: string, key: string) =>
  (unit.get(section) ?? []).filter(([k]) => k === key).map(([, v]) => v);

/** The wrapper command lines an example runs: argv after the wrapper's path. */
function wrapperCalls(source: string): string[][] {
  return [...source.matchAll(new RegExp(`${wrapper}((?: +--?[a-z-]+(?: +[a-z,]+)?)*)`, "g"))].map((m) =>
    m[1]!.trim().split(/ +/).filter(Boolean),
  );
}
const tagOf = (argv: string[]) => argv[argv.indexOf("--tags") + 1]!;
const entryTagged = (tag: string) => entries.filter((e) => e.tags.includes(tag));

describe("the per-user examples (static)", () => {
  it("the mapfile parses; system accounts' entries are absolute, the login user's relative", () => {
    expect(entries.map((e) => e.user)).toEqual(["restic", "nightly", "alice", "alice", "alice"]);
    for (const e of entries) expect(e.path.startsWith("/"), `${e.user} ${e.path}`).toBe(e.user !== "alice");
  });

  it("webapp.container: quadlet sections and keys; the volume is the webapp entry's file under %t/secrets; fetch before, cleanup after", () => {
    const unit = parseUnit(text("webapp.container"), "webapp.container");
    expect([...unit.keys()]).toEqual(["Unit", "Container", "Service", "Install"]);
    expect(unit.get("Container")!.map(([k]) => k)).toEqual(["Image", "Volume", "Environment"]);
    expect(values(unit, "Container", "Image")[0]).toMatch(/^localhost\//);
    const [source, target, options] = values(unit, "Container", "Volume")[0]!.split(":");
    const [pre] = values(unit, "Service", "ExecStartPre");
    const [post] = values(unit, "Service", "ExecStopPost");
    const tag = tagOf(wrapperCalls(pre!)[0]!);
    const [entry] = entryTagged(tag);
    expect(entry?.user).toBe("alice");
    expect(source).toBe(`%t/secrets/${entry!.path}`);
    expect(options).toBe("ro,Z");
    expect(values(unit, "Container", "Environment")).toEqual([`DB_PASSWORD_FILE=${target}`]);
    expect(wrapperCalls(pre!)).toEqual([["--serialize", "--tags", tag]]);
    expect(wrapperCalls(post!)).toEqual([["--cleanup", "--tags", tag]]);
    expect(values(unit, "Install", "WantedBy")).toEqual(["default.target"]);
  });

  it("compose.yaml: a file secret at the compose entry's path under $XDG_RUNTIME_DIR/secrets, given to the service", () => {
    const doc = yaml.load(text("compose.yaml")) as {
      services: Record<string, { image: string; secrets: string[]; environment: Record<string, string> }>;
      secrets: Record<string, { file: string }>;
    };
    expect(Object.keys(doc)).toEqual(["services", "secrets"]);
    const webapp = doc.services["webapp"]!;
    expect(webapp.secrets).toEqual(["db_password"]);
    expect(webapp.environment["DB_PASSWORD_FILE"]).toBe("/run/secrets/db_password");
    const calls = wrapperCalls(text("compose.yaml").replaceAll("homelab-secrets-user", wrapper));
    expect(calls).toEqual([
      ["--tags", "compose"],
      ["--cleanup", "--tags", "compose"],
    ]);
    const [entry] = entryTagged("compose");
    expect(entry?.user).toBe("alice");
    expect(doc.secrets["db_password"]!.file).toMatch(new RegExp(`^\\$\\{XDG_RUNTIME_DIR:\\?[^}]*\\}/secrets/${entry!.path}$`));
  });

  it("no example sets NoNewPrivileges= (the set-id wrapper could not run)", () => {
    for (const name of ["restic.service", "sync.service", "webapp.container"]) {
      expect(text(name)).not.toMatch(/^\s*NoNewPrivileges=/m);
    }
  });

  describe("every wrapper command line of every example is accepted by the CLI", () => {
    const all = ["restic.service", "sync.service", "webapp.container", "compose.yaml", "nightly-sync.cron"].flatMap((name) =>
      wrapperCalls(
        text(name)
          .replace(/^(\s*#\s*)homelab-secrets-user/gm, `$1${wrapper}`)
          .replace(/&& homelab-secrets-user/g, `&& ${wrapper}`),
      ).map((argv) => [name, argv] as const),
    );
    let work: string;
    beforeAll(() => {
      work = mkdtempSync(join(tmpdir(), "hs-examples-"));
      mkdirSync(join(work, "conf"));
      writeFileSync(join(work, "map"), "");
    });
    afterAll(() => rmSync(work, { recursive: true, force: true }));

    it("(each example has a fetch and a cleanup for the same tag, present in the mapfile)", () => {
      const byFile = new Map<string, string[][]>();
      for (const [name, argv] of all) byFile.set(name, [...(byFile.get(name) ?? []), argv]);
      expect([...byFile.keys()].sort()).toEqual([
        "compose.yaml",
        "nightly-sync.cron",
        "restic.service",
        "sync.service",
        "webapp.container",
      ]);
      for (const [name, calls] of byFile) {
        expect(
          calls.filter((a) => a.includes("--cleanup")),
          name,
        ).toHaveLength(1);
        expect(
          calls.filter((a) => !a.includes("--cleanup")),
          name,
        ).toHaveLength(1);
        expect(new Set(calls.map(tagOf)).size, name).toBe(1);
        expect(entryTagged(tagOf(calls[0]!)).length, name).toBeGreaterThan(0);
      }
    });

    it.each(all.map(([name, argv]) => [name, argv.join(" ")]))("%s: %s", async (_name, args) => {
      // Run directly against an empty mapfile: the flags must parse (a bad one is 64).
      const r = await execa(
        process.execPath,
        [cliPath(), "user", ...args.split(" "), "--map-file-path", join(work, "map"), "--config-dir", join(work, "conf")],
        { reject: false },
      );
      expect(r.exitCode, r.stderr).toBe(0);
    });
  });

  it("the Debian package installs the wrapper the examples call and ships every example", () => {
    const out = mkdtempSync(join(tmpdir(), "hs-examples-deb-"));
    try {
      const deb = packageDeb({ outDir: out });
      const listing = execFileSync("dpkg-deb", ["-c", deb.path], { encoding: "utf8" });
      const paths = new Set(listing.split("\n").map((l) => l.split(/\s+/).at(5)?.replace(/^\./, "")));
      expect(paths.has(wrapper)).toBe(true);
      for (const name of [
        "mapfile",
        "restic.service",
        "sync.service",
        "webapp.container",
        "compose.yaml",
        "nightly-sync.cron",
        "nightly-sync.tmpfiles",
      ]) {
        expect(paths.has(`/usr/share/doc/homelab-secrets/examples/plain-linux/per-user/${name}`), name).toBe(true);
      }
    } finally {
      rmSync(out, { recursive: true, force: true });
    }
  }, 120_000);
});
