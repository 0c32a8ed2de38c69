import { configError } from "../errors.js";
import type { SourceConfig } from "../spec.js";
import { defaultRateLimit, type RateLimit } from "./rate-limit.js";

export { defaultConfigDir } from "../host-paths.js";

/** Everything config.json sets. */
export interface HostSettings {
  readonly source: SourceConfig;
  /** null: no per-user limit (config.json `"userRateLimit": null`). */
  readonly userRateLimit: RateLimit | null;
}

/** config.json's source (see parseHostSettings). */
export function parseHostConfig(text: string, file: string): SourceConfig {
  return parseHostSettings(text, file).source;
}

/**
 * `config.json` in the host config directory chooses the source for user mode:
 * `{"source":{"type":"onepassword"}}` (the default when the file is absent),
 * `{"source":{"type":"connect","host":"URL"}}` or `{"source":{"type":"file","path":"/abs"}}`.
 * The token for onepassword/connect is the config directory's `token` file.
 * `"userRateLimit": {"runs": N, "perSeconds": S}` limits how often each user's runs through
 * the wrapper may read with that token (default 10 per 600 s); `null` turns it off.
 */
export function parseHostSettings(text: string, file: string): HostSettings {
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch (error) {
    throw configError(`${file}: not valid JSON (${(error as Error).message})`);
  }
  if (!isObject(parsed)) throw configError(`${file}: must be a JSON object`);
  for (const key of Object.keys(parsed)) {
    if (key !== "source" && key !== "userRateLimit")
      throw configError(`${file}: unknown key "${key}" (only "source" and "userRateLimit" are allowed)`);
  }
  return { source: parseSource(parsed["source"], file), userRateLimit: parseRateLimit(parsed["userRateLimit"], file) };
}

function parseRateLimit(value: unknown, file: string): RateLimit | null {
  if (value === undefined) return defaultRateLimit;
  if (value === null) return null;
  if (!isObject(value)) throw configError(`${file}: "userRateLimit" must be an object or null`);
  for (const key of Object.keys(value)) {
    if (key !== "runs" && key !== "perSeconds")
      throw configError(`${file}: userRateLimit.${key} is not allowed (only runs and perSeconds)`);
  }
  const { runs, perSeconds } = value;
  if (typeof runs !== "number" || !Number.isInteger(runs) || runs < 1)
    throw configError(`${file}: userRateLimit.runs must be a positive integer`);
  if (typeof perSeconds !== "number" || !Number.isInteger(perSeconds) || perSeconds < 1 || perSeconds > 86_400) {
    throw configError(`${file}: userRateLimit.perSeconds must be an integer from 1 to 86400`);
  }
  return { runs, perSeconds };
}

function parseSource(source: unknown, file: string): SourceConfig {
  if (source === undefined) return { type: "onepassword" };
  if (!isObject(source)) throw configError(`${file}: "source" must be an object`);
  const allowed = (keys: string[]) => {
    for (const key of Object.keys(source)) {
      if (!keys.includes(key)) throw configError(`${file}: source.${key} is not allowed for source type "${String(source["type"])}"`);
    }
  };
  switch (source["type"]) {
    case "onepassword":
      allowed(["type"]);
      return { type: "onepassword" };
    case "connect": {
      allowed(["type", "host", "listenerUser"]);
      const host = source["host"];
      if (typeof host !== "string" || !/^https?:\/\/[^\s/]+/.test(host)) throw configError(`${file}: source.host must be an http(s) URL`);
      const listenerUser = source["listenerUser"];
      if (listenerUser === undefined) return { type: "connect", host };
      if (
        !(typeof listenerUser === "string" && /^[A-Za-z0-9_][A-Za-z0-9_.-]*\$?$/.test(listenerUser)) &&
        !(Number.isInteger(listenerUser) && (listenerUser as number) >= 0)
      ) {
        throw configError(`${file}: source.listenerUser must be a user name or uid`);
      }
      return { type: "connect", host, listenerUser: listenerUser as string | number };
    }
    case "file": {
      allowed(["type", "path"]);
      const path = source["path"];
      if (typeof path !== "string" || !path.startsWith("/")) throw configError(`${file}: source.path must be an absolute path`);
      return { type: "file", path };
    }
    default:
      throw configError(`${file}: source.type must be "onepassword", "connect" or "file"`);
  }
}

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}
