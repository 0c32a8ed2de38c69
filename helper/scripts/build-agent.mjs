#!/usr/bin/env node
// Compile the agent's socket-activated front end (helper/agent/homelab-secrets-agent.c).
// Unlike the privilege wrapper it bakes in no paths: its unit's ExecStart= names node and
// the CLI after "--".
//
//   node helper/scripts/build-agent.mjs      -> build/homelab-secrets-agent
//   HS_AGENT_OUT=PATH                        a different output file
//
// Without a C compiler it says so and builds nothing, except under CI=true, where that fails.
import { execFileSync, spawnSync } from "node:child_process";
import { mkdirSync } from "node:fs";
import { dirname, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { cflags } from "./build-wrapper.mjs";

const root = resolve(dirname(fileURLToPath(import.meta.url)), "../..");
export const agentSource = resolve(root, "helper/agent/homelab-secrets-agent.c");
export const defaultAgentPath = resolve(root, "build/homelab-secrets-agent");

/**
 * @param {{ out?: string, cc?: string }} [options]
 * @returns {string} the path of the binary
 */
export function buildAgent(options = {}) {
  const out = resolve(options.out ?? defaultAgentPath);
  mkdirSync(dirname(out), { recursive: true });
  execFileSync(options.cc ?? "cc", [...cflags, "-o", out, agentSource], { stdio: ["ignore", "inherit", "inherit"] });
  return out;
}

if (process.argv[1] && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const cc = process.env.CC || "cc";
  if (spawnSync(cc, ["--version"], { stdio: "ignore" }).status !== 0) {
    const message = `build-agent: no C compiler (${cc}); the credential agent's front end was NOT built`;
    process.stderr.write(`${message}${process.env.CI === "true" ? "" : " (skipped outside CI)"}\n`);
    process.exit(process.env.CI === "true" ? 1 : 0);
  }
  try {
    process.stderr.write(`build-agent: wrote ${buildAgent({ out: process.env.HS_AGENT_OUT || undefined, cc })}\n`);
  } catch (error) {
    process.stderr.write(`build-agent: ${error instanceof Error ? error.message : String(error)}\n`);
    process.exit(1);
  }
}
