// Security issue 13, item 9: a name too long for the temp file beside it is refused when the
// mapfile is read (65, FILE:LINE), not half-way through writing.
import { describe, expect, it } from "vitest";
import { parseMapfile } from "../../helper/src/mapfile.js";

describe("mapfile: file names that cannot be written atomically", () => {
  it("refuses a last path component over 230 bytes, naming the line", () => {
    const long = "a".repeat(231);
    const { entries, problems } = parseMapfile(`alice op://V/I/f ok\nalice op://V/I/f dir/${long}\n`, "map");
    expect(entries.map((e) => e.line)).toEqual([1]);
    expect(problems.map((p) => p.message)).toEqual([expect.stringMatching(/^map:2: file name of 231 bytes is too long \(at most 230/)]);
  });

  it("counts bytes, not characters, and accepts 230", () => {
    expect(parseMapfile(`alice op://V/I/f ${"a".repeat(230)}\n`, "map").problems).toEqual([]);
    expect(parseMapfile(`alice op://V/I/f /x/${"é".repeat(116)}\n`, "map").problems).toHaveLength(1);
  });
});
