import { describe, expect, it } from "vitest";
import {
  checkWriterPath,
  matchesFilter,
  outputPath,
  parseMapfile,
  parseMapfileStrict,
  parseTags,
  selectEntries,
} from "../../helper/src/mapfile.js";
import { planEntries, tagFilter } from "../../helper/src/user/plan.js";

const F = "/etc/homelab-secrets/mapfile";

describe("mapfile grammar", () => {
  const good: [string, string, { user: string; ref: string; path: string; tags: string[] }][] = [
    ["3 fields", "alice op://V/I/f out.txt", { user: "alice", ref: "op://V/I/f", path: "out.txt", tags: [] }],
    ["4 fields", "alice op://V/I/f out.txt a,b", { user: "alice", ref: "op://V/I/f", path: "out.txt", tags: ["a", "b"] }],
    ["section ref", "alice op://V/I/S/f /abs/x", { user: "alice", ref: "op://V/I/S/f", path: "/abs/x", tags: [] }],
    ["otp query", "alice op://V/I/f?attribute=totp otp", { user: "alice", ref: "op://V/I/f?attribute=totp", path: "otp", tags: [] }],
    ["leading/trailing spaces", "   alice op://V/I/f x   ", { user: "alice", ref: "op://V/I/f", path: "x", tags: [] }],
    ["tabs between fields", "alice\top://V/I/f\tx\tt1", { user: "alice", ref: "op://V/I/f", path: "x", tags: ["t1"] }],
    ["runs of mixed whitespace", "alice \t  op://V/I/f \t x", { user: "alice", ref: "op://V/I/f", path: "x", tags: [] }],
    ["empty tags dropped", "alice op://V/I/f x a,,b,", { user: "alice", ref: "op://V/I/f", path: "x", tags: ["a", "b"] }],
    ["only commas: untagged", "alice op://V/I/f x ,,,", { user: "alice", ref: "op://V/I/f", path: "x", tags: [] }],
    ["CRLF line", "alice op://V/I/f x t\r", { user: "alice", ref: "op://V/I/f", path: "x", tags: ["t"] }],
    ["nested relative path", "alice op://V/I/f a/b/c.txt", { user: "alice", ref: "op://V/I/f", path: "a/b/c.txt", tags: [] }],
    ["a hash inside a field is not a comment", "alice op://V/I/f x#y", { user: "alice", ref: "op://V/I/f", path: "x#y", tags: [] }],
  ];
  it.each(good)("accepts %s", (_name, line, want) => {
    const { entries, problems } = parseMapfile(line, F);
    expect(problems).toEqual([]);
    expect(entries).toHaveLength(1);
    const [e] = entries;
    expect({ user: e!.user, ref: e!.ref.raw, path: e!.path, tags: e!.tags }).toEqual(want);
    expect(e!.line).toBe(1);
  });

  it("skips blank lines and # comments (also indented), keeps line numbers", () => {
    const text = ["# header", "", "   ", "\t# indented comment", "alice op://V/I/f x", "", "bob op://V/I/g y t"].join("\n");
    const { entries, problems } = parseMapfile(text, F);
    expect(problems).toEqual([]);
    expect(entries.map((e) => [e.line, e.user])).toEqual([
      [5, "alice"],
      [7, "bob"],
    ]);
  });

  const bad: [string, string, RegExp][] = [
    ["1 field", "alice", /:1: expected 3 or 4 fields.*found 1/],
    ["2 fields", "alice op://V/I/f", /:1: expected 3 or 4 fields.*found 2/],
    ["5 fields (tags with spaces)", "alice op://V/I/f x a, b", /:1: expected 3 or 4 fields.*found 5.*without spaces/],
    ["inline comment makes 5+ fields", "alice op://V/I/f x t # note", /found 6/],
    ["not op://", "alice https://V/I/f x", /:1: invalid secret reference.*must start with "op:\/\/"/],
    ["2-segment ref", "alice op://V/f x", /:1: invalid secret reference.*3 or 4 segments/],
    ["bad query", "alice op://V/I/f?attribute=foo x", /unsupported query/],
    [".. in relative path", "alice op://V/I/f ../x", /:1: path "..\/x" contains ".."/],
    [".. in absolute path", "alice op://V/I/f /run/user/1/secrets/../../x", /contains "\.\."/],
    ["trailing slash", "alice op://V/I/f dir/", /names a directory/],
  ];
  it.each(bad)("reports %s with FILE:LINE", (_name, line, pattern) => {
    const { entries, problems } = parseMapfile(`# c\n${line}`, F);
    expect(entries).toEqual([]);
    expect(problems).toHaveLength(1);
    expect(problems[0]!.message.replace(`${F}:2`, `${F}:1`)).toMatch(pattern);
    expect(problems[0]!.message.startsWith(`${F}:2:`)).toBe(true);
    expect(problems[0]!.line).toBe(2);
  });

  it("reports every malformed line, not just the first", () => {
    expect(() => parseMapfileStrict("a b\nalice op://V/I/f x\nc d e f g", F)).toThrow(/mapfile:1: .*; .*mapfile:3: /);
    try {
      parseMapfileStrict("a b", F);
    } catch (error) {
      expect((error as { exitCode: number }).exitCode).toBe(65);
    }
  });
});

describe("tag filter (op-secret-manager semantics)", () => {
  const text = [
    "alice op://V/I/untagged u",
    "alice op://V/I/web w web",
    "alice op://V/I/db d db",
    "alice op://V/I/both b web,db",
    "alice op://V/I/other o other",
    "bob op://V/I/bob bob web",
  ].join("\n");
  const { entries } = parseMapfile(text, F);
  const pick = (tags: string | undefined, untagged: boolean) =>
    selectEntries(entries, "alice", { tags: parseTags(tags), untagged }).map((e) => e.path);

  const cases: [string, string | undefined, boolean, string[]][] = [
    ["no filter: all of the caller's", undefined, false, ["u", "w", "d", "b", "o"]],
    ["--tags web", "web", false, ["w", "b"]],
    ["--tags web,db", "web,db", false, ["w", "d", "b"]],
    ["--tags ' web , db ' (spaces trimmed)", " web , db ", false, ["w", "d", "b"]],
    ["--tags web --untagged", "web", true, ["u", "w", "b"]],
    ["--untagged alone", undefined, true, ["u"]],
    ["--tags nothing-matches", "nope", false, []],
    ["--tags nothing-matches --untagged", "nope", true, ["u"]],
  ];
  it.each(cases)("%s", (_name, tags, untagged, want) => {
    expect(pick(tags, untagged)).toEqual(want);
  });

  // An empty filter once meant "no filter", so `--cleanup --tags "$UNSET"` removed everything.
  it("--tags '' is refused (64), not read as no tag filter", () => {
    expect(() => pick("", false)).toThrow(
      expect.objectContaining({ exitCode: 64, message: expect.stringContaining("--tags names no tag") as unknown }),
    );
  });
  it("--tags ',,' --untagged is refused (64), not read as untagged only", () => {
    expect(() => pick(",,", true)).toThrow(
      expect.objectContaining({ exitCode: 64, message: expect.stringContaining("--tags names no tag") as unknown }),
    );
  });

  it("never selects another user's entries", () => {
    expect(selectEntries(entries, "bob", { tags: [], untagged: false }).map((e) => e.path)).toEqual(["bob"]);
    expect(selectEntries(entries, "carol", { tags: [], untagged: false })).toEqual([]);
    expect(selectEntries(entries, "alic", { tags: [], untagged: false })).toEqual([]);
  });

  it("matchesFilter table", () => {
    expect(matchesFilter({ tags: [] }, { tags: [], untagged: false })).toBe(true);
    expect(matchesFilter({ tags: ["a"] }, { tags: [], untagged: true })).toBe(false);
    expect(matchesFilter({ tags: ["a"] }, { tags: ["b"], untagged: true })).toBe(false);
    expect(matchesFilter({ tags: ["a", "b"] }, { tags: ["b"], untagged: false })).toBe(true);
  });

  it("cleanup uses the same filter (planEntries is shared by fetch and --cleanup)", () => {
    const caller = { user: "alice", uid: 1000 };
    expect(planEntries(text, F, caller, tagFilter("db", false), false).map((p) => p.path)).toEqual([
      "/run/user/1000/secrets/d",
      "/run/user/1000/secrets/b",
    ]);
    expect(planEntries(text, F, caller, tagFilter(undefined, true), false).map((p) => p.path)).toEqual(["/run/user/1000/secrets/u"]);
  });
});

describe("paths", () => {
  it("relative paths go under /run/user/<uid>/secrets/, absolute ones stay", () => {
    expect(outputPath("x", 1001)).toBe("/run/user/1001/secrets/x");
    expect(outputPath("a/./b", 1001)).toBe("/run/user/1001/secrets/a/b");
    expect(outputPath("/home/alice/.config/t", 1001)).toBe("/home/alice/.config/t");
    expect(outputPath("/a//b", 1001)).toBe("/a/b");
    expect(() => outputPath("../x", 1001)).toThrow(/\.\./);
  });

  it("the writer re-checks what the fetcher sends", () => {
    expect(checkWriterPath("/run/user/1/secrets/x", 1)).toBeUndefined();
    expect(checkWriterPath("relative", 1)).toMatch(/not absolute/);
    expect(checkWriterPath("/a/../b", 1)).toMatch(/\.\./);
    expect(checkWriterPath("/a/./b", 1)).toMatch(/"\."/);
    expect(checkWriterPath("/a//b", 1)).toMatch(/empty/);
    expect(checkWriterPath("/a/b/", 1)).toMatch(/empty/);
    expect(checkWriterPath("/a\0b", 1)).toMatch(/NUL/);
    expect(checkWriterPath("/run/user/1/secrets", 1)).toMatch(/secrets directory itself/);
    expect(checkWriterPath(`/${"a".repeat(5000)}`, 1)).toMatch(/too long/);
  });

  it("two entries writing one path are refused, naming both lines", () => {
    expect(() =>
      planEntries("alice op://V/I/a x\nalice op://V/I/b ./x", F, { user: "alice", uid: 5 }, tagFilter(undefined, false), false),
    ).toThrow(/mapfile:2: \/run\/user\/5\/secrets\/x is also written by line 1/);
  });

  it("privileged runs hide other users' malformed lines but show the caller's", () => {
    const text = "bob op://V/secret-item-name\nalice op://bad x";
    let message = "";
    try {
      planEntries(text, F, { user: "alice", uid: 5 }, tagFilter(undefined, false), true);
    } catch (error) {
      message = (error as Error).message;
    }
    expect(message).toMatch(/mapfile:1: malformed line \(another user's entry; details hidden\)/);
    expect(message).not.toMatch(/secret-item-name/);
    expect(message).toMatch(/mapfile:2: invalid secret reference "op:\/\/bad"/);
  });
});
