/**
 * README.md and docs/*.md point only at what the repository has: every relative link at an
 * existing file (and an existing heading, for `#anchor` links into a Markdown file), and every
 * repository path written in backticks at an existing file or directory.
 */
import { describe, expect, it } from "vitest";
import { existsSync, readdirSync, readFileSync } from "node:fs";
import { dirname, join, relative } from "node:path";
import { repoRoot } from "../helpers.js";

/** The Markdown files a newcomer reads. */
function documents(): string[] {
  const docs = readdirSync(join(repoRoot, "docs"))
    .filter((name) => name.endsWith(".md"))
    .map((name) => join(repoRoot, "docs", name));
  return [join(repoRoot, "README.md"), ...docs];
}

/** Markdown without its fenced code blocks (links and paths there are examples, not references). */
function prose(text: string): string {
  return text.replace(/^```[^\n]*\n[\s\S]*?^```\s*$/gm, "");
}

/** GitHub's heading anchors: lower case, punctuation dropped, spaces to hyphens, repeats numbered. */
export function anchorsOf(markdown: string): Set<string> {
  const anchors = new Set<string>();
  const seen = new Map<string, number>();
  for (const match of prose(markdown).matchAll(/^#{1,6}\s+(.+?)\s*#*\s*$/gm)) {
    const base = match[1]!
      .toLowerCase()
      .replace(/[^\p{L}\p{N}\s_-]/gu, "")
      .replace(/\s/g, "-");
    const count = seen.get(base) ?? 0;
    seen.set(base, count + 1);
    anchors.add(count === 0 ? base : `${base}-${count}`);
  }
  return anchors;
}

/** Every `[text](target)` link that is not to another host. */
function relativeLinks(markdown: string): string[] {
  const links = [...prose(markdown).matchAll(/\]\(([^)\s]+)(?:\s+"[^"]*")?\)/g)].map((m) => m[1]!);
  return links.filter((target) => !/^[a-z][a-z0-9+.-]*:/i.test(target));
}

/** Problems with the links of `file`, as "FILE: target: why". */
export function brokenLinks(file: string, markdown: string): string[] {
  const problems: string[] = [];
  const name = relative(repoRoot, file);
  for (const target of relativeLinks(markdown)) {
    const [path, fragment] = target.split("#", 2) as [string, string | undefined];
    const resolved = path === "" ? file : join(dirname(file), decodeURIComponent(path));
    if (!existsSync(resolved)) {
      problems.push(`${name}: ${target}: no such file`);
      continue;
    }
    if (fragment !== undefined && resolved.endsWith(".md")) {
      const text = resolved === file ? markdown : readFileSync(resolved, "utf8");
      if (!anchorsOf(text).has(fragment)) problems.push(`${name}: ${target}: no such heading`);
    }
  }
  return problems;
}

const repositoryPath =
  /^(?:helper|tests|nix|modules|examples|docs|packaging|bench|\.ci)\/[\w./@-]*$|^(?:CHANGELOG\.md|SECURITY\.md|LICENSE|README\.md|flake\.nix|flake\.lock|package(?:-lock)?\.json)$/;

/** Repository paths in backticks (`tests/e2e/README.md`) that do not exist. */
export function missingPaths(file: string, markdown: string): string[] {
  const name = relative(repoRoot, file);
  return [...prose(markdown).matchAll(/`([^`\s]+)`/g)]
    .map((m) => m[1]!.replace(/[.,:;]$/, ""))
    .filter((path) => repositoryPath.test(path))
    .filter((path) => !existsSync(join(repoRoot, path)))
    .map((path) => `${name}: \`${path}\`: not in the repository`);
}

describe("documentation links", () => {
  it("every relative link in README.md and docs/*.md points at an existing file and heading", () => {
    const problems = documents().flatMap((file) => brokenLinks(file, readFileSync(file, "utf8")));
    expect(problems).toEqual([]);
  });

  it("every repository path named in backticks exists", () => {
    const problems = documents().flatMap((file) => missingPaths(file, readFileSync(file, "utf8")));
    expect(problems).toEqual([]);
  });

  it("the checks themselves find a missing file, a missing heading and a missing path", () => {
    const readme = join(repoRoot, "README.md");
    const text =
      "# Title\n\n## Two words\n\n[a](docs/nope.md) [b](#two-words) [c](#three) [d](SECURITY.md#nope) [e](https://x.invalid/y)\n`tests/nope.test.ts` `tests/unit`\n";
    expect(brokenLinks(readme, text)).toEqual([
      "README.md: docs/nope.md: no such file",
      "README.md: #three: no such heading",
      "README.md: SECURITY.md#nope: no such heading",
    ]);
    expect(missingPaths(readme, text)).toEqual(["README.md: `tests/nope.test.ts`: not in the repository"]);
  });
});
