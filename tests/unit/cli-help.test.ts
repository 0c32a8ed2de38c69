/**
 * `homelab-secrets <command> --help` as a newcomer reads it: 1–3 examples, the exit codes the
 * command can end with (numbers from ExitCode, the one source), and only flags that do something.
 */
import { beforeAll, describe, expect, it } from "vitest";
import { ExitCode } from "../../helper/src/errors.js";
import { runCli } from "../helpers.js";

const commands = [
  "fetch",
  "refresh",
  "refresh-credentials",
  "read",
  "check",
  "cleanup",
  "agent",
  "install",
  "user",
  "doctor",
  "demo",
] as const;
type Command = (typeof commands)[number];

const help = new Map<Command, string>();
beforeAll(async () => {
  const results = await Promise.all(commands.map((command) => runCli([command, "--help"])));
  for (const [i, result] of results.entries()) {
    expect(result.exitCode, commands[i]).toBe(0);
    expect(result.stderr).toBe("");
    help.set(commands[i]!, result.stdout);
  }
});

/** The lines of one "Title:" block of the help text, up to the next blank line. */
function block(text: string, title: string): string[] {
  const start = text.indexOf(`\n${title}:\n`);
  if (start === -1) return [];
  const rest = text.slice(start + title.length + 3);
  return rest
    .split(/\n\s*\n/)[0]!
    .split("\n")
    .filter((line) => line.trim() !== "");
}

/** The long flags --help lists under "Options:". */
function flags(text: string): string[] {
  return block(text, "Options").flatMap((line) => /^\s+(?:-\w, )?(--[\w-]+)/.exec(line)?.[1] ?? []);
}

describe("--help of every command", () => {
  it("the main --help lists exactly these commands", async () => {
    const main = await runCli(["--help"]);
    const listed = [...main.stdout.matchAll(/^\s+homelab-secrets ([\w-]+)/gm)].map((m) => m[1]!);
    expect(listed).toEqual([...commands]);
  });

  for (const command of commands) {
    it(`${command}: 1–3 examples of the command itself`, () => {
      // An example starts with the program (wrapped lines continue it); the wrapper and the agent's
      // front end are how `user` and `agent` are reached, so their examples may start there.
      const examples = block(help.get(command)!, "Examples").filter((line) => /^ {2}homelab-secrets/.test(line));
      expect(examples.length, command).toBeGreaterThanOrEqual(1);
      expect(examples.length, command).toBeLessThanOrEqual(3);
      for (const line of examples) expect(line).toMatch(/^ {2}homelab-secrets\S* \S.*\S {2,}\S/);
      expect(
        examples.some((line) => line.startsWith(`  homelab-secrets ${command} `) || line.startsWith("  homelab-secrets-user")),
        command,
      ).toBe(true);
    });

    it(`${command}: an epilogue with its exit codes, each a code of ExitCode with its meaning`, () => {
      const lines = block(help.get(command)!, "Exit codes");
      const known = new Set<number>(Object.values(ExitCode));
      const codes = lines.map((line) => {
        const match = /^\s+(\d+)\s+(\S.*)$/.exec(line);
        expect(match, `${command}: ${line}`).not.toBeNull();
        return Number(match![1]);
      });
      for (const code of codes) expect(known.has(code), `${command}: ${code}`).toBe(true);
      expect(codes).toEqual([...codes].sort((a, b) => a - b));
      expect(codes).toEqual(expect.arrayContaining([ExitCode.ok, ExitCode.usage, ExitCode.software]));
    });
  }

  it("lists only the flags each command uses", () => {
    const source = ["--source", "--connect-host", "--token-credential", "--token-file", "--deadline"];
    const expected: Record<Command, string[]> = {
      fetch: [...source, "--serialize", "--verbose", "--spec", "--cache", "--cache-dir", "--cache-max-age", "--cache-reuse"],
      refresh: [...source, "--serialize", "--verbose", "--spec", "--restart", "--reload", "--from-credentials", "--cache", "--cache-dir"],
      "refresh-credentials": ["--verbose", "--service", "--id", "--restart"],
      read: [...source, "--verbose", "--out", "--mode"],
      check: ["--verbose", "--spec", "--mapfile"],
      cleanup: ["--verbose", "--spec", "--output-dir"],
      agent: [
        ...source,
        "--verbose",
        "--policy",
        "--ttl",
        "--not-found-ttl",
        "--fd",
        "--check",
        "--cache",
        "--cache-dir",
        "--cache-key",
        "--cache-max-age",
      ],
      install: ["--verbose", "--spec"],
      user: [
        "--verbose",
        "--cleanup",
        "--serialize",
        "--api-key-path",
        "--map-file-path",
        "--tags",
        "--untagged",
        "--deadline",
        "--config-dir",
      ],
      doctor: ["--config-dir", "--wrapper", "--service-user"],
      demo: ["--verbose", "--output-dir"],
    };
    for (const command of commands) {
      const listed = flags(help.get(command)!).filter((f) => f !== "--help" && f !== "--version");
      expect(listed.sort(), command).toEqual([...expected[command]].sort());
    }
  });
});
