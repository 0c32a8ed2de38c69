// `homelab-secrets user` accepts op-secret-manager's one-dash long flags.
import { describe, expect, it } from "vitest";
import { normalizeUserArgv } from "../../helper/src/commands/user.js";

describe("argv normalisation (op-secret-manager takes -flag and --flag)", () => {
  it.each([
    [
      ["-map-file-path", "/x"],
      ["--map-file-path", "/x"],
    ],
    [
      ["-tags=a,b", "-untagged"],
      ["--tags=a,b", "--untagged"],
    ],
    [
      ["-v", "-cleanup"],
      ["-v", "--cleanup"],
    ],
    [
      ["--serialize", "-version"],
      ["--serialize", "--version"],
    ],
    [["-unknown-flag"], ["-unknown-flag"]],
    [
      ["--", "-cleanup"],
      ["--", "-cleanup"],
    ],
  ])("%j", (input, want) => {
    expect(normalizeUserArgv(input)).toEqual(want);
  });
});
