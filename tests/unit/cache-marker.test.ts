// The cached-values markers are read by doctor, as root, on a terminal: whatever is in one
// (a backend's error text, a forged or truncated file) must neither crash it nor reach the
// terminal as control characters.
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { listMarkers, printable, writeMarker } from "../../helper/src/cache/marker.js";

// eslint-disable-next-line no-control-regex -- the characters a terminal acts on
const control = /[\u0000-\u001f\u007f-\u009f]/;
const hostile = "HTTP 503: \u001b]0;owned\u0007\u001b[2J\u009b31m\r\nforged line\u007f";

describe("cache markers", () => {
  let dir: string;
  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), "hs-marker-"));
  });
  afterEach(() => rmSync(dir, { recursive: true, force: true }));

  it("printable replaces C0, DEL and C1 characters by spaces and keeps the rest", () => {
    expect(printable(hostile)).toBe("HTTP 503:  ]0;owned  [2J 31m  forged line ");
    expect(printable("café – ok ✓")).toBe("café – ok ✓");
  });

  it("a written marker holds no control character from its reason, and reads back", async () => {
    await writeMarker(dir, "app", { since: 2_000, storedAt: 1_000, reason: hostile });
    expect(readFileSync(join(dir, "app"), "utf8")).not.toMatch(/\\u00|\\u001b|\\r|\\n(?!$)/);
    expect(listMarkers(dir)).toEqual([{ name: "app", marker: { since: 2_000, storedAt: 1_000, reason: printable(hostile) } }]);
  });

  it.each([
    ["a time no Date can hold", { since: 1e300, storedAt: 0, reason: "x" }],
    ["a time that is text", { since: "now", storedAt: 0, reason: "x" }],
    ["no storedAt", { since: 1, reason: "x" }],
    ["null", null],
    ["a number", 5],
  ])("a marker with %s reads as unreadable", (_, content) => {
    writeFileSync(join(dir, "app"), JSON.stringify(content));
    expect(listMarkers(dir)).toEqual([{ name: "app", marker: undefined }]);
  });

  it("a forged marker's reason and name are made printable on reading; a reason that is no text reads empty", () => {
    writeFileSync(join(dir, "web\u001b[1m"), JSON.stringify({ since: 2, storedAt: 1, reason: hostile }));
    writeFileSync(join(dir, "db"), JSON.stringify({ since: 2, storedAt: 1, reason: { evil: true } }));
    const markers = listMarkers(dir);
    expect(markers).toEqual([
      { name: "db", marker: { since: 2, storedAt: 1, reason: "" } },
      { name: "web [1m", marker: { since: 2, storedAt: 1, reason: printable(hostile) } },
    ]);
    for (const m of markers) expect(`${m.name} ${m.marker?.reason ?? ""}`).not.toMatch(control);
  });
});
