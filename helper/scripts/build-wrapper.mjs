#!/usr/bin/env node
// Compile the privilege wrapper (helper/wrapper/homelab-secrets-user.c) against this
// checkout: node and the CLI are baked in as absolute paths, never looked up at run time.
//
//   node helper/scripts/build-wrapper.mjs            -> build/homelab-secrets-user
//   HS_CONFIG_DIR=/srv/hs node helper/scripts/...   a different host config directory
//   HS_WRAPPER_OUT=PATH                              a different output file
//   HS_SERVICE_USER=NAME                             for a SUID-root install (see the C file)
//   HS_STATE_DIR=/var/lib/homelab-secrets-user       the service account's state (rate limit)
//
// Tests import buildWrapper() to build private copies with their own config directory.
import { execFileSync } from "node:child_process";
import { mkdirSync, realpathSync } from "node:fs";
import { dirname, isAbsolute, resolve } from "node:path";
import { fileURLToPath } from "node:url";

const root = resolve(dirname(fileURLToPath(import.meta.url)), "../..");
export const wrapperSource = resolve(root, "helper/wrapper/homelab-secrets-user.c");
export const defaultWrapperPath = resolve(root, "build/homelab-secrets-user");
export const cflags = ["-O2", "-Wall", "-Wextra", "-Werror", "-D_FORTIFY_SOURCE=2", "-fstack-protector-strong", "-fPIE", "-pie"];

/** A C string literal for a path; refuses characters that would need escaping. */
function cString(name, value) {
  if (typeof value !== "string" || !isAbsolute(value)) throw new Error(`${name} must be an absolute path, got ${JSON.stringify(value)}`);
  if (/["\\\n\r\0]/.test(value)) throw new Error(`${name} contains a quote, backslash or control character: ${JSON.stringify(value)}`);
  return `"${value}"`;
}

/**
 * @param {{ configDir?: string, out?: string, node?: string, cli?: string, serviceUser?: string, lockTimeoutSeconds?: number, fetcherLimitSeconds?: number, stateDir?: string, cc?: string }} [options]
 * @returns {string} the path of the binary
 */
export function buildWrapper(options = {}) {
  const node = options.node ?? realpathSync(process.execPath);
  const cli = options.cli ?? resolve(root, "helper/dist/cli.js");
  const configDir = options.configDir ?? "/etc/homelab-secrets";
  const out = resolve(options.out ?? defaultWrapperPath);
  const defines = [
    `-DHS_NODE=${cString("HS_NODE", node)}`,
    `-DHS_CLI=${cString("HS_CLI", cli)}`,
    `-DHS_CONFIG_DIR=${cString("HS_CONFIG_DIR", configDir.replace(/\/+$/, "") || "/")}`,
  ];
  if (options.serviceUser) {
    if (!/^[a-z_][a-z0-9_-]*\$?$/i.test(options.serviceUser)) throw new Error(`bad service user name ${options.serviceUser}`);
    defines.push(`-DHS_SERVICE_USER="${options.serviceUser}"`);
  }
  if (options.lockTimeoutSeconds !== undefined) {
    if (!Number.isInteger(options.lockTimeoutSeconds) || options.lockTimeoutSeconds < 2)
      throw new Error("lockTimeoutSeconds must be an integer of at least 2");
    defines.push(`-DHS_LOCK_TIMEOUT_S=${options.lockTimeoutSeconds}`);
    // The fetcher's limit must stay below the lock wait: a waiter outlasts a stuck holder.
    const limit =
      options.fetcherLimitSeconds ?? (options.lockTimeoutSeconds >= 20 ? options.lockTimeoutSeconds - 10 : options.lockTimeoutSeconds - 1);
    defines.push(`-DHS_FETCHER_LIMIT_S=${limit}`);
  } else if (options.fetcherLimitSeconds !== undefined) {
    defines.push(`-DHS_FETCHER_LIMIT_S=${options.fetcherLimitSeconds}`);
  }
  if (options.fetcherLimitSeconds !== undefined && (!Number.isInteger(options.fetcherLimitSeconds) || options.fetcherLimitSeconds < 1)) {
    throw new Error("fetcherLimitSeconds must be a positive integer");
  }
  if (options.stateDir !== undefined)
    defines.push(`-DHS_STATE_DIR=${cString("HS_STATE_DIR", options.stateDir.replace(/\/+$/, "") || "/")}`);
  mkdirSync(dirname(out), { recursive: true });
  execFileSync(options.cc ?? "cc", [...cflags, ...defines, "-o", out, wrapperSource], { stdio: ["ignore", "inherit", "inherit"] });
  return out;
}

if (process.argv[1] && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  try {
    const out = buildWrapper({
      configDir: process.env.HS_CONFIG_DIR || undefined,
      out: process.env.HS_WRAPPER_OUT || undefined,
      serviceUser: process.env.HS_SERVICE_USER || undefined,
      stateDir: process.env.HS_STATE_DIR || undefined,
    });
    process.stderr.write(`build-wrapper: wrote ${out}\n`);
  } catch (error) {
    process.stderr.write(`build-wrapper: ${error instanceof Error ? error.message : String(error)}\n`);
    process.exit(1);
  }
}
