// Direct (unwrapped) user runs: where the token and mapfile come from.
import { describe, expect, it } from "vitest";
import { chooseUserPaths } from "../../helper/src/user/direct.js";

describe("path precedence: flag > env > default", () => {
  const configDir = "/etc/homelab-secrets";
  const env = { OP_API_KEY_PATH: "/env/token", OP_MAP_FILE_PATH: "/env/map" };
  it.each([
    ["defaults", {}, {}, "/etc/homelab-secrets/token", "/etc/homelab-secrets/mapfile"],
    ["env", {}, env, "/env/token", "/env/map"],
    ["flags win over env", { apiKeyPath: "/flag/token", mapFilePath: "/flag/map" }, env, "/flag/token", "/flag/map"],
    ["empty env ignored", {}, { OP_API_KEY_PATH: "", OP_MAP_FILE_PATH: "" }, "/etc/homelab-secrets/token", "/etc/homelab-secrets/mapfile"],
  ] as const)("%s", (_name, flags, environment, token, map) => {
    const got = chooseUserPaths({ configDir, apiKeyPath: undefined, mapFilePath: undefined, ...flags, environment });
    expect(got).toEqual({ tokenPath: token, mapfilePath: map });
  });
});
