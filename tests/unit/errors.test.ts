// The exit-code table in one place: errors.ts, the README's table and the C wrapper agree.
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { ExitCode, exitCodeOf, failureOf, isHomelabError, tempFailError } from "../../helper/src/errors.js";

const repoRoot = join(import.meta.dirname, "../..");

describe("exit codes", () => {
  it("the README's table lists exactly the codes in ExitCode", () => {
    const readme = readFileSync(join(repoRoot, "README.md"), "utf8");
    const section = readme.slice(readme.indexOf("### Retries, deadline, exit codes"));
    const table = [...section.slice(0, section.indexOf("\n\n", section.indexOf("| code |"))).matchAll(/^\| (\d+) \|/gm)].map((m) =>
      Number(m[1]),
    );
    expect(table).toEqual(Object.values(ExitCode).sort((a, b) => a - b));
  });

  it("the wrapper's own sysexits match ExitCode", () => {
    const c = readFileSync(join(repoRoot, "helper/wrapper/homelab-secrets-user.c"), "utf8");
    const defined = Object.fromEntries([...c.matchAll(/^#define (EX_[A-Z]+) (\d+)$/gm)].map((m) => [m[1]!, Number(m[2])]));
    expect(defined["EX_OSERR"]).toBe(ExitCode.osErr);
    for (const value of Object.values(defined)) expect(Object.values(ExitCode)).toContain(value);
  });

  it("anything that is not a HomelabError is internal: 70 and the stack", () => {
    const bug = new TypeError("x is undefined");
    expect(isHomelabError(bug)).toBe(false);
    expect(exitCodeOf(bug)).toBe(70);
    expect(ExitCode.software).toBe(70);
    const failure = failureOf(bug);
    expect(failure).toMatchObject({ exitCode: 70, internal: true });
    expect(failure.line).toMatch(/^internal error: TypeError: x is undefined\n\s+at /);
    expect(failureOf("thrown string")).toEqual({ exitCode: 70, line: "internal error: thrown string", internal: true });
  });

  it("a HomelabError keeps its code and message", () => {
    const error = tempFailError("backend down");
    expect(isHomelabError(error)).toBe(true);
    expect(failureOf(error)).toEqual({ exitCode: 75, line: "backend down", internal: false });
  });
});
