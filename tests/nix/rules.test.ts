// One rule set for specs, owned by the CLI: every case goes through the CLI's validator
// (parseSpec, what `homelab-secrets check --spec` runs) AND the Nix module's
// (nix/lib.nix specProblems after mkSpec), and both must give the expected verdict.
import { execFileSync } from "node:child_process";
import { existsSync } from "node:fs";
import { join, resolve } from "node:path";
import { describe, expect, it } from "vitest";
import { parseSpec } from "../../helper/src/spec.js";
import { findNixInstantiate, inCI, readOnlyStore, repoRoot } from "./nix-env.js";

type Verdict = "ok" | "refused";
interface Case {
  readonly what: string;
  readonly spec: Record<string, unknown>;
  readonly verdict: Verdict;
}

const ref = "op://V/I/f";
const file = (mode: string): Record<string, unknown> => ({ files: { secret: { ref, mode } } });
const named = (name: string): Record<string, unknown> => ({ files: { [name]: { ref } } });
const envVar = (key: string): Record<string, unknown> => ({ envFiles: { "app.env": { vars: { [key]: ref } } } });
const template = (content: string, mode = "0400"): Record<string, unknown> => ({ templates: { "app.conf": { content, mode } } });

const cases: Case[] = [
  // File modes: the owner may do anything; group may read (and traverse), never write; others nothing.
  ...(["0400", "400", "0600", "0440", "0640", "0700", "0750", "0000", "0410"] as const).map((m) => ({
    what: `file mode ${m}`,
    spec: file(m),
    verdict: "ok" as const,
  })),
  ...(["0644", "0460", "0777", "0666", "0620", "0604", "0401", "0402", "0660", "0670"] as const).map((m) => ({
    what: `file mode ${m}`,
    spec: file(m),
    verdict: "refused" as const,
  })),
  ...(["4400", "2440", "1400", "0800", "u+r", "", "04000", "40"] as const).map((m) => ({
    what: `file mode ${JSON.stringify(m)}`,
    spec: file(m),
    verdict: "refused" as const,
  })),
  { what: "env file mode 0440", spec: { envFiles: { "app.env": { mode: "0440", vars: { K: ref } } } }, verdict: "ok" },
  { what: "env file mode 0644", spec: { envFiles: { "app.env": { mode: "0644", vars: { K: ref } } } }, verdict: "refused" },
  { what: "template mode 0666", spec: template(`{{ ${ref} }}`, "0666"), verdict: "refused" },
  // dirMode: the same rule (group may list and enter, others nothing).
  ...(["0750", "0700", "0710", "0500", "750"] as const).map((m) => ({
    what: `dirMode ${m}`,
    spec: { ...file("0400"), dirMode: m },
    verdict: "ok" as const,
  })),
  ...(["0755", "0770", "0751", "0711", "2750", "1777", "75x"] as const).map((m) => ({
    what: `dirMode ${m}`,
    spec: { ...file("0400"), dirMode: m },
    verdict: "refused" as const,
  })),
  // Output names: one plain file name the temp file beside it still fits.
  ...(["password", "app.env", "a@b", "x-y_z.1", "_x", "9", "a".repeat(230)] as const).map((n) => ({
    what: `output name ${n.length > 40 ? `of ${n.length} chars` : JSON.stringify(n)}`,
    spec: named(n),
    verdict: "ok" as const,
  })),
  ...(
    ["with space", ".hidden", ".hs-x", "-x", "a/b", "x.hs-tmp", "ünï", "a:b", "a+b", "a\tb", "a\nb", ".", "..", "a".repeat(231)] as const
  ).map((n) => ({
    what: `output name ${n.length > 40 ? `of ${n.length} chars` : JSON.stringify(n)}`,
    spec: named(n),
    verdict: "refused" as const,
  })),
  // Environment variable names.
  ...(["KEY", "_k1", "key", "A_B_9"] as const).map((k) => ({ what: `env var ${k}`, spec: envVar(k), verdict: "ok" as const })),
  ...(["1KEY", "KEY-X", "KÉY", "K Y", "", "K.Y"] as const).map((k) => ({
    what: `env var ${JSON.stringify(k)}`,
    spec: envVar(k),
    verdict: "refused" as const,
  })),
  // Templates: `op inject` placeholders; any other {{ … }} (Go templates) is literal text.
  ...[
    `{{ ${ref} }}`,
    `{{${ref}}}`,
    `{{  ${ref}?attribute=totp  }}`,
    `{{ op://V/I/S/f }}`,
    `{{ ${ref}\t}}`,
    `{{\n${ref}\n}}`,
    `alert: {{ .Labels.alertname }}\npassword: {{ ${ref} }}`,
    `{{ .Values.x }} {{ ${ref} }}`,
    `{{ OP://V/I/f }} {{ ${ref} }}`,
    `{{ {{ ${ref} }}`,
    `{{ ${ref} }}}`,
  ].map((content) => ({ what: `template ${JSON.stringify(content)}`, spec: template(content), verdict: "ok" as const })),
  ...[
    `{{ op://V/I }}`,
    `{{ ${ref} }`,
    `{{ ${ref}}x }}`,
    `{{ op:// }}`,
    `{{ ${ref}?x=y }}`,
    `{{ op://V/I/f$ }}`,
    `{{ op://V/I/ f }}`,
    `{{ .Values.x }}`,
    `static text`,
    ``,
  ].map((content) => ({ what: `template ${JSON.stringify(content)}`, spec: template(content), verdict: "refused" as const })),
];

const withBase = (c: Case) => ({ name: "app", outputDir: "/run/app-secrets", ...c.spec });

function cliVerdict(c: Case): Verdict {
  try {
    parseSpec(JSON.stringify({ version: 1, ...withBase(c) }), "spec.json");
    return "ok";
  } catch (error) {
    if ((error as { exitCode?: number }).exitCode !== 65) throw error;
    return "refused";
  }
}

/** nixpkgs lib: NIXPKGS_LIB, else the shared copy beside the repository (as in CI). */
function nixpkgsLib(): string | undefined {
  const root = process.env["NIXPKGS_LIB"] || resolve(repoRoot, "../shared/nix-eval");
  for (const dir of [join(root, "lib"), root]) if (existsSync(join(dir, "default.nix")) && existsSync(join(dir, "strings.nix"))) return dir;
  return undefined;
}

const nix = findNixInstantiate();
const libDir = nixpkgsLib();
const missing = !nix ? "nix-instantiate is not installed" : !libDir ? "no nixpkgs lib (set NIXPKGS_LIB)" : undefined;
if (missing && inCI) throw new Error(`the rule table cannot run against Nix in CI: ${missing}`);
if (missing) console.warn(`\n*** SKIPPED the Nix half of the rule table: ${missing}. ***\n`);

function nixVerdicts(): Verdict[] {
  const expr = `{ cases }: let lib = import ${libDir}; hs = import ${join(repoRoot, "nix/lib.nix")} { inherit lib; }; in map (c: hs.specProblems (hs.mkSpec c)) (builtins.fromJSON cases)`;
  const out = execFileSync(
    nix!,
    ["--eval", "--strict", "--json", ...readOnlyStore, "--expr", expr, "--argstr", "cases", JSON.stringify(cases.map(withBase))],
    {
      encoding: "utf8",
      stdio: ["ignore", "pipe", "pipe"],
      timeout: 120_000,
    },
  );
  return (JSON.parse(out) as string[][]).map((problems) => (problems.length === 0 ? "ok" : "refused"));
}

describe("spec rules: one table, the CLI's and the Nix module's validators", () => {
  it.each(cases.map((c) => [c.what, c] as const))("CLI: %s", (_what, c) => {
    expect(cliVerdict(c)).toBe(c.verdict);
  });

  it.skipIf(missing !== undefined)("Nix: every case gets the same verdict as the table (and so as the CLI)", () => {
    const verdicts = nixVerdicts();
    const got = cases.map((c, i) => `${c.what}: ${verdicts[i]}`);
    expect(got).toEqual(cases.map((c) => `${c.what}: ${c.verdict}`));
  });
});
