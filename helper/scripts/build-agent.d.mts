// Type declarations for build-agent.mjs (plain JavaScript, run with bare `node`).

/** helper/agent/homelab-secrets-agent.c in this checkout. */
export const agentSource: string;
/** build/homelab-secrets-agent in this checkout. */
export const defaultAgentPath: string;

/** Compile the agent's front end (throws when the compiler fails). @returns the path of the binary */
export function buildAgent(options?: { out?: string; cc?: string }): string;
