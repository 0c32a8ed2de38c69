import { configError } from "../errors.js";
import type { SourceConfig } from "../spec.js";

/** The host configuration directory; the wrapper has its own copy fixed at build time. */
export const defaultConfigDir = "/etc/homelab-secrets";

/**
 * `config.json` in the host config directory chooses the source for user mode:
 * `{"source":{"type":"onepassword"}}` (the default when the file is absent),
 * `{"source":{"type":"connect","host":"URL"}}` or `{"source":{"type":"file","path":"/abs"}}`.
 * The token for onepassword/connect is the config directory's `token` file.
 */
export function parseHostConfig(text: string, file: string): SourceConfig {
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch (error) {
    throw configError(`${file}: not valid JSON (${(error as Error).message})`);
  }
  if (!isObject(parsed)) throw configError(`${file}: must be a JSON object`);
  for (const key of Object.keys(parsed)) {
    if (key !== "source") throw configError(`${file}: unknown key "${key}" (only "source" is allowed)`);
  }
  const source = parsed["source"];
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
      if (!(typeof listenerUser === "string" && /^[A-Za-z0-9_][A-Za-z0-9_.-]*\$?$/.test(listenerUser)) && !(Number.isInteger(listenerUser) && (listenerUser as number) >= 0)) {
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
