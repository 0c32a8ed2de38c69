import { readFileSync } from "node:fs";
import { createRequire } from "node:module";
import { configError } from "./errors.js";

/**
 * Resolve a user or group name (or a numeric id) to an id. /etc/passwd and /etc/group
 * first; then `getent`, so NSS-provided accounts (LDAP, systemd's nss module) work too.
 */
export function lookupUid(name: string | number): number {
  return lookupId(name, "passwd");
}

export function lookupGid(name: string | number): number {
  return lookupId(name, "group");
}

export function primaryGidOf(uid: number): number | undefined {
  const entry = readDatabase("passwd").find((fields) => fields[2] === String(uid));
  return entry ? Number(entry[3]) : undefined;
}

export function userNameOf(uid: number): string | undefined {
  const entry = readDatabase("passwd").find((fields) => fields[2] === String(uid));
  if (entry) return entry[0];
  return getent("passwd", String(uid))?.[0];
}

function lookupId(name: string | number, database: "passwd" | "group"): number {
  if (typeof name === "number") return name;
  if (/^\d+$/.test(name)) return Number(name);
  const entry = readDatabase(database).find((fields) => fields[0] === name) ?? getent(database, name);
  if (!entry || entry[2] === undefined) {
    throw configError(`unknown ${database === "passwd" ? "user" : "group"} "${name}"`);
  }
  return Number(entry[2]);
}

function readDatabase(database: "passwd" | "group"): string[][] {
  try {
    return readFileSync(`/etc/${database}`, "utf8")
      .split("\n")
      .filter((line) => line && !line.startsWith("#"))
      .map((line) => line.split(":"));
  } catch {
    return [];
  }
}

function getent(database: string, key: string): string[] | undefined {
  // Loaded only for accounts /etc does not list: child_process costs startup time at boot.
  const { execFileSync } = createRequire(import.meta.url)("node:child_process") as typeof import("node:child_process");
  try {
    const out = execFileSync("getent", [database, key], { encoding: "utf8", stdio: ["ignore", "pipe", "ignore"], timeout: 5000 });
    return out.trim().split(":");
  } catch {
    return undefined;
  }
}
