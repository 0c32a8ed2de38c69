/**
 * Env-file encoding: every value must come back byte for byte from `. ./file` in bash and
 * dash. Values reach the shell only through the file; they come back through a pipe.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { existsSync } from "node:fs";
import { writeFile } from "node:fs/promises";
import { join } from "node:path";
import { execa } from "execa";
import { HomelabError } from "../../helper/src/errors.js";
import { encodeEnvFile, encodeEnvLine, envKeyPattern, maxEnvEntryBytes } from "../../helper/src/render/env.js";
import { makeTempDir, removeTempDirs } from "../helpers.js";

const findShell = (name: string) => ["/usr/bin", "/bin", "/usr/local/bin"].map((d) => join(d, name)).find((p) => existsSync(p));
const shells = { bash: findShell("bash"), dash: findShell("dash") };
const inCi = process.env["CI"] === "true" || process.env["CI"] === "1";

if (!shells.dash && !inCi) {
  console.warn(
    "\n*** env.test.ts: SKIPPING the dash round trips: dash is not installed (apt-get install -y dash). In CI this fails. ***\n",
  );
}

let dir: string;
beforeAll(async () => {
  dir = await makeTempDir("hs-env-");
});
afterAll(removeTempDirs);

/** Source `content` in `shell` with `set -a` and print $name through a pipe; returns the bytes. */
async function sourceAndPrint(shell: string, content: string, name: string, command = `printf '%s' "$${name}"`) {
  const file = join(dir, "vars.env");
  await writeFile(file, content);
  const result = await execa(shell, ["-c", `set -a; . ./vars.env; ${command}`], {
    cwd: dir,
    env: { PATH: "/usr/bin:/bin", LC_ALL: "C" },
    extendEnv: false,
    encoding: "buffer",
    stripFinalNewline: false,
    reject: false,
    stdin: "ignore",
  });
  return { exitCode: result.exitCode, stdout: Buffer.from(result.stdout), stderr: Buffer.from(result.stderr).toString("utf8") };
}

const nearLimit = (key: string, filler: string) => {
  // Mixed specials and multi-byte text, padded with ASCII to exactly the limit in bytes.
  let value = "";
  while (Buffer.byteLength(`${key}=${value}${filler}`) <= maxEnvEntryBytes) value += filler;
  value += "x".repeat(maxEnvEntryBytes - Buffer.byteLength(`${key}=${value}`));
  return value;
};

const values: Array<[string, string]> = [
  ["plain", "correct horse battery staple"],
  ["double quotes", 'say "hi" ""'],
  ["single quotes", "it's 'quoted' ''"],
  ["backslashes", 'a\\b\\\\c \\n \\t \\$ \\"'],
  ["trailing backslash", "ends with \\"],
  ["only a backslash", "\\"],
  ["dollar", "$ $$ $1 $@ $* $# $? $- $! $0"],
  ["braces expansion", "${HOME} ${X:-default} ${#X} ${X:=y}"],
  ["command substitution", "$(touch pwned) $(id)"],
  ["backticks", "`touch pwned` `id`"],
  ["arithmetic", "$((1+2))"],
  ["history", "!! !$ !-1"],
  ["newlines", "line1\nline2\n\nline4\n"],
  ["leading newline", "\nafter"],
  ["newline then something that looks like an assignment", "x\nINJECTED=1\nexport PATH=/tmp\n"],
  ["escaped quote then newline and assignment", 'x\\"\nINJECTED="1'],
  ["CR", "a\rb\r"],
  ["CRLF", "first\r\nsecond\r\n"],
  ["backslash newline", "a\\\nb"],
  ["tabs", "\tcol1\tcol2\t"],
  ["unicode", "grüße, Ωμέγα, 日本語, עברית"],
  ["emoji", "🔐🗝️👩‍💻"],
  ["combining marks", "e\u0301 a\u0308 n\u0303\u0323"],
  ["equals", "a=b==c="],
  ["hash", "#not a comment # x"],
  ["semicolon", "; echo pwned; ;"],
  ["leading and trailing spaces", "  padded  "],
  ["only spaces", "   "],
  ["empty", ""],
  ["glob", "* ? [a-z] ~ ~root"],
  ["redirections and pipes", "> out < in | cat & bg && || 2>&1"],
  ["json", '{"password": "p@ss\\"w$rd", "list": [1, 2]}'],
  ["control characters", "\x01\x02\x07\x1b[31m\x7f"],
  ["very long, exactly at the limit", nearLimit("VALUE", '$`"\\ é🔐\n')],
];

describe.each(Object.entries(shells))("env files round-trip through %s", (name, shell) => {
  if (!shell) {
    if (inCi) it(`${name} is installed`, () => expect.fail(`${name} is required in CI (apt-get install -y ${name})`));
    else it.skip(`${name} is not installed`, () => undefined);
    return;
  }

  it.each(values)("%s", async (_what, value) => {
    const content = encodeEnvFile([["VALUE", value]], "t.env");
    const { exitCode, stdout, stderr } = await sourceAndPrint(shell, content, "VALUE");
    expect(stderr).toBe("");
    expect(exitCode).toBe(0);
    expect(stdout.equals(Buffer.from(value, "utf8")), `${name} changed the value`).toBe(true);
    expect(existsSync(join(dir, "pwned"))).toBe(false);
  });

  it("round-trips every value at once from one file, in order", async () => {
    const vars = values.map(([, value], i) => [`V_${i}`, value] as const);
    const content = encodeEnvFile(vars, "all.env");
    expect(content.split("").filter((c) => c === "\n").length).toBeGreaterThanOrEqual(vars.length);
    // Print each value as <length>:<bytes> so nothing can hide in a separator.
    const script = vars.map(([key]) => `printf '%s:%s' "\${#${key}}" "$${key}"`).join("; ");
    const { exitCode, stdout } = await sourceAndPrint(shell, content, "", `LC_ALL=C; ${script}`);
    expect(exitCode).toBe(0);
    const expected = Buffer.concat(
      vars.map(([, value]) => Buffer.concat([Buffer.from(`${Buffer.byteLength(value)}:`), Buffer.from(value, "utf8")])),
    );
    expect(stdout.equals(expected)).toBe(true);
  });

  it("exports the variables (set -a) so a child process sees them exactly, up to the kernel limit", async () => {
    const value = values.at(-1)![1];
    expect(Buffer.byteLength(`VALUE=${value}`)).toBe(maxEnvEntryBytes);
    const content = encodeEnvFile([["VALUE", value]], "t.env");
    const { exitCode, stdout, stderr } = await sourceAndPrint(shell, content, "VALUE", "exec /usr/bin/printenv VALUE");
    expect(stderr).toBe("");
    expect(exitCode).toBe(0);
    expect(stdout.equals(Buffer.from(`${value}\n`, "utf8"))).toBe(true);
  });

  it("one byte more is what the kernel refuses (E2BIG), which is why the encoder refuses it", async () => {
    const value = "y".repeat(maxEnvEntryBytes + 1 - "VALUE=".length);
    const content = `VALUE="${value}"\n`; // written by hand: the encoder would refuse it
    const { exitCode, stderr } = await sourceAndPrint(shell, content, "VALUE", "exec /usr/bin/printenv VALUE");
    expect(exitCode).not.toBe(0);
    expect(stderr).toMatch(/Argument list too long/);
  });
});

describe("encodeEnvLine", () => {
  it('writes KEY="value" + LF with a backslash before \\ " $ and backtick only', () => {
    expect(encodeEnvLine("K", "a\\b\"c$d`e'f\ng", "t.env")).toBe('K="a\\\\b\\"c\\$d\\`e\'f\ng"\n');
    expect(
      encodeEnvFile(
        [
          ["A", "1"],
          ["B", ""],
        ],
        "t.env",
      ),
    ).toBe('A="1"\nB=""\n');
  });

  const refuse = (key: string, value: string) => {
    try {
      encodeEnvLine(key, value, "app.env");
    } catch (error) {
      expect(error).toBeInstanceOf(HomelabError);
      return error as HomelabError;
    }
    throw new Error("accepted");
  };

  it.each([
    ["NUL", "before\0after", /NUL/],
    ["NUL at the end", "secret-value\0", /NUL/],
    ["a lone high surrogate", "secret-value\ud800", /not valid UTF-8/],
    ["a lone low surrogate", "\udc00secret-value", /not valid UTF-8/],
    ["reversed surrogates", "secret-value\udc00\ud800", /not valid UTF-8/],
  ])("refuses %s, naming the file and variable but not the value", (_what, value, why) => {
    const error = refuse("DB_PASSWORD", value);
    expect(error.exitCode).toBe(65);
    expect(error.message).toMatch(why);
    expect(error.message).toContain("app.env");
    expect(error.message).toContain("DB_PASSWORD");
    expect(error.message).not.toContain("secret-value");
    expect(error.message).not.toContain("before");
  });

  it("accepts KEY=value of exactly 131071 bytes and refuses 131072", () => {
    expect(maxEnvEntryBytes).toBe(131071);
    const secret = "S3CR3T-";
    const fill = (total: number, key: string) => {
      const body = total - Buffer.byteLength(`${key}=`) - Buffer.byteLength(secret) - 2; // two bytes of "é"
      return `${secret}é${"z".repeat(body)}`;
    };
    const ok = fill(131071, "BIG");
    expect(Buffer.byteLength(`BIG=${ok}`)).toBe(131071);
    expect(encodeEnvLine("BIG", ok, "app.env")).toBe(`BIG="${ok}"\n`);

    const tooBig = fill(131072, "BIG");
    expect(Buffer.byteLength(`BIG=${tooBig}`)).toBe(131072);
    const error = refuse("BIG", tooBig);
    expect(error.exitCode).toBe(65);
    expect(error.message).toContain("BIG");
    expect(error.message).toContain("app.env");
    expect(error.message).toContain("131072");
    expect(error.message).not.toContain(secret);
    expect(error.message).not.toContain("zzzz");
  });

  it("counts the limit in UTF-8 bytes, not characters", () => {
    const value = "é".repeat(70_000); // 70,000 characters, 140,000 bytes
    expect(refuse("K", value).message).toMatch(/140002 bytes/);
  });

  it.each(["1ABC", "A-B", "A B", "", "A=B", "É", "A.B", "$A", "A\nB"])("refuses the key %j", (key) => {
    const error = refuse(key, "value");
    expect(error.exitCode).toBe(65);
    expect(error.message).toMatch(/is not a valid name/);
    expect(envKeyPattern.test(key)).toBe(false);
  });

  it.each(["A", "_", "_A1", "abc", "PATH_2"])("accepts the key %j", (key) => {
    expect(encodeEnvLine(key, "v", "t.env")).toBe(`${key}="v"\n`);
  });
});
