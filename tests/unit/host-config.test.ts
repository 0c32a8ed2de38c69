// The host's config.json for user mode: accepted shapes and refusals.
import { describe, expect, it } from "vitest";
import { parseHostConfig } from "../../helper/src/user/host-config.js";

describe("host config.json", () => {
  it.each([
    ["{}", { type: "onepassword" }],
    ['{"source":{"type":"onepassword"}}', { type: "onepassword" }],
    ['{"source":{"type":"connect","host":"http://127.0.0.1:8080"}}', { type: "connect", host: "http://127.0.0.1:8080" }],
    ['{"source":{"type":"file","path":"/etc/homelab-secrets/vault.json"}}', { type: "file", path: "/etc/homelab-secrets/vault.json" }],
  ])("%s", (text, want) => {
    expect(parseHostConfig(text, "config.json")).toEqual(want);
  });
  it.each([
    ["not json", /not valid JSON/],
    ["[]", /JSON object/],
    ['{"sauce":{}}', /unknown key "sauce"/],
    ['{"source":{"type":"vault"}}', /source.type must be/],
    ['{"source":{"type":"file","path":"rel"}}', /absolute/],
    ['{"source":{"type":"connect","host":"ftp://x"}}', /http\(s\) URL/],
    ['{"source":{"type":"onepassword","tokenFile":"/x"}}', /not allowed/],
  ])("refuses %s", (text, pattern) => {
    expect(() => parseHostConfig(text, "config.json")).toThrow(pattern);
  });
});
