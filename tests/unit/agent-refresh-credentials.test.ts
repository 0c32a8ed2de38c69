import { mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { runRefreshCredentials } from "../../helper/src/commands/refresh-credentials.js";
import { HomelabError } from "../../helper/src/errors.js";
import { createLogger, type Logger } from "../../helper/src/log.js";

function captureLogger(): { log: Logger; lines: string[] } {
  const lines: string[] = [];
  return { log: createLogger({ journal: false, verbose: true, write: (l) => void lines.push(l) }), lines };
}

let root: string;
let fresh: string;
let running: string;
let restarts: string[];
beforeEach(() => {
  root = mkdtempSync(join(tmpdir(), "hs-refresh-creds-"));
  fresh = join(root, "fresh");
  running = join(root, "running");
  mkdirSync(fresh);
  mkdirSync(running);
  restarts = [];
});
afterEach(() => rmSync(root, { recursive: true, force: true }));

const put = (dir: string, files: Record<string, string>) => {
  for (const [id, content] of Object.entries(files)) writeFileSync(join(dir, id), content, { mode: 0o400 });
};

function run(ids = ["pw", "app.env"], restart = true) {
  const { log, lines } = captureLogger();
  const outcome = runRefreshCredentials({
    service: "web.service",
    ids,
    restart,
    freshDir: fresh,
    runningDir: running,
    log,
    restartService: (s) => {
      restarts.push(s);
      return Promise.resolve();
    },
  });
  return { outcome, lines };
}

describe("refresh-credentials", () => {
  it("unchanged: nothing restarted", async () => {
    put(fresh, { pw: "p1", "app.env": "A=1\n" });
    put(running, { pw: "p1", "app.env": "A=1\n" });
    expect(await run().outcome).toEqual({ kind: "unchanged" });
    expect(restarts).toEqual([]);
  });

  it("one credential differs (same size, other bytes): the service restarted once; the log names the ID, never a value", async () => {
    put(fresh, { pw: "p2", "app.env": "A=1\n" });
    put(running, { pw: "p1", "app.env": "A=1\n" });
    const { outcome, lines } = run();
    expect(await outcome).toEqual({ kind: "changed", ids: ["pw"], restarted: true });
    expect(restarts).toEqual(["web.service"]);
    const text = lines.join("\n");
    expect(text).toMatch(/web\.service: credential\(s\) changed: pw; restarting it/);
    expect(text).not.toMatch(/p1|p2/);
  });

  it("a credential the running service does not have (or a symlink there) counts as changed; no restart unless asked", async () => {
    put(fresh, { pw: "p1", "app.env": "A=1\n" });
    put(running, { "app.env": "A=1\n" });
    symlinkSync(join(fresh, "pw"), join(running, "pw"));
    expect(await run(["pw", "app.env"], false).outcome).toEqual({ kind: "changed", ids: ["pw"], restarted: false });
    expect(restarts).toEqual([]);
  });

  it("the service not running (no credentials directory): nothing read, nothing restarted, success", async () => {
    rmSync(running, { recursive: true });
    expect(await run().outcome).toEqual({ kind: "not-running" });
    expect(restarts).toEqual([]);
  });

  it("its own credential empty or missing (the agent or backend failed): 75, the service untouched", async () => {
    put(fresh, { pw: "", "app.env": "A=2\n" });
    put(running, { pw: "p1", "app.env": "A=1\n" });
    const empty = await run().outcome.catch((e: unknown) => e as HomelabError);
    expect(empty).toBeInstanceOf(HomelabError);
    expect((empty as HomelabError).exitCode).toBe(75);
    expect((empty as HomelabError).message).toMatch(/credential pw was not loaded \(empty\).*web\.service left untouched/);
    rmSync(join(fresh, "pw"));
    const missing = await run().outcome.catch((e: unknown) => e as HomelabError);
    expect((missing as HomelabError).message).toMatch(/credential pw was not loaded \(missing\)/);
    expect(restarts).toEqual([]);
  });

  it("bad IDs and no credentials directory: usage and configuration errors", async () => {
    const bad = await run(["a/b"]).outcome.catch((e: unknown) => e as HomelabError);
    expect((bad as HomelabError).exitCode).toBe(64);
    const { log } = captureLogger();
    const saved = process.env["CREDENTIALS_DIRECTORY"];
    delete process.env["CREDENTIALS_DIRECTORY"];
    try {
      const none = await runRefreshCredentials({ service: "web.service", ids: ["pw"], restart: true, runningDir: running, log }).catch(
        (e: unknown) => e as HomelabError,
      );
      expect((none as HomelabError).exitCode).toBe(78);
    } finally {
      if (saved !== undefined) process.env["CREDENTIALS_DIRECTORY"] = saved;
    }
  });
});
