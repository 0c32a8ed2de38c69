// How `agent --cache` finds its key and directory: $CREDENTIALS_DIRECTORY/agent-cache-key and
// $STATE_DIRECTORY (a symlink into /var/lib/private for a DynamicUser= unit), or the flags.
import { randomBytes } from "node:crypto";
import { mkdirSync, mkdtempSync, rmSync, statSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { openLastGood } from "../../helper/src/commands/agent.js";
import type { Logger } from "../../helper/src/log.js";
import { parseReference } from "../../helper/src/reference.js";
import type { SourceConfig } from "../../helper/src/spec.js";

const source: SourceConfig = { type: "file", path: "/etc/homelab-secrets/vault.json" };
let root: string;
let warnings: string[];
const log: Logger = { error() {}, warn: (m) => warnings.push(m), info() {}, debug() {} };

beforeEach(() => {
  root = mkdtempSync(join(tmpdir(), "hs-agent-cache-config-"));
  warnings = [];
});
afterEach(() => rmSync(root, { recursive: true, force: true }));

describe("agent --cache: key and directory", () => {
  it("under systemd: the key from $CREDENTIALS_DIRECTORY, the sealed file in the private directory $STATE_DIRECTORY links to", async () => {
    const credentials = join(root, "credentials");
    const real = join(root, "private", "homelab-secrets-agent");
    mkdirSync(credentials);
    mkdirSync(real, { recursive: true, mode: 0o700 });
    symlinkSync("private/homelab-secrets-agent", join(root, "homelab-secrets-agent"));
    writeFileSync(join(credentials, "agent-cache-key"), randomBytes(32));
    const env = { CREDENTIALS_DIRECTORY: credentials, STATE_DIRECTORY: join(root, "homelab-secrets-agent") };
    const cache = await openLastGood({ maxAgeSeconds: 60 }, source, log, env);
    expect(cache).toBeDefined();
    const a = parseReference("op://V/a/password");
    await cache!.remember([a], new Map([[a.raw, "A"]]), Date.now());
    expect(warnings).toEqual([]);
    expect(statSync(join(real, "values.sealed")).mode & 0o777).toBe(0o600);
  });

  it("no key, a key of the wrong size or no directory: a warning and no cache (the agent still serves fresh values)", async () => {
    const dir = join(root, "state");
    expect(await openLastGood({ maxAgeSeconds: 60 }, source, log, { STATE_DIRECTORY: dir })).toBeUndefined();
    expect(warnings.at(-1)).toMatch(/agent cache: off: no --cache-key and no \$CREDENTIALS_DIRECTORY/);
    expect(await openLastGood({ maxAgeSeconds: 60, keyFile: join(root, "absent") }, source, log, { STATE_DIRECTORY: dir })).toBeUndefined();
    expect(warnings.at(-1)).toMatch(/agent cache: off: cannot read its key \S+absent: ENOENT/);
    writeFileSync(join(root, "short"), randomBytes(16));
    expect(await openLastGood({ maxAgeSeconds: 60, keyFile: join(root, "short") }, source, log, { STATE_DIRECTORY: dir })).toBeUndefined();
    expect(warnings.at(-1)).toMatch(/its key \S+short is 16 bytes, not 32/);
    expect(await openLastGood({ maxAgeSeconds: 60, keyFile: join(root, "short") }, source, log, {})).toBeUndefined();
    expect(warnings.at(-1)).toMatch(/no --cache-dir and no \$STATE_DIRECTORY/);
    await expect(openLastGood({ maxAgeSeconds: 0 }, source, log, {})).rejects.toMatchObject({ exitCode: 64 });
  });
});
