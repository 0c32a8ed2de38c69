// `homelab-secrets install`: a <service>-secrets unit's outputs written from the credentials
// systemd loaded from the agent, with the spec's owner and modes — real users and chown.
import { mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync, existsSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { runInstall } from "../../helper/src/agent/install.js";
import { HomelabError } from "../../helper/src/errors.js";
import { silentLogger } from "../../helper/src/log.js";
import { createAccount, rootSkipReason, type TestAccount } from "./root-env.js";

const skip = rootSkipReason();

describe.skipIf(skip !== undefined)("install from agent credentials (root)", () => {
  let dir: string;
  let account: TestAccount;
  beforeAll(() => {
    dir = mkdtempSync(join(tmpdir(), "hs-install-"));
    account = createAccount();
  });
  afterAll(() => {
    rmSync(dir, { recursive: true, force: true });
    account?.remove();
  });

  const setup = (credentials: Record<string, string | undefined>) => {
    const creds = mkdtempSync(join(dir, "creds-"));
    for (const [id, value] of Object.entries(credentials)) if (value !== undefined) writeFileSync(join(creds, id), value);
    const out = join(dir, `out-${Object.keys(credentials).length}-${Math.random().toString(36).slice(2)}`);
    const spec = join(creds, "..", `${out.split("/").pop()}.json`);
    writeFileSync(
      spec,
      JSON.stringify({
        version: 1,
        name: "app",
        outputDir: out,
        owner: account.name,
        dirMode: "0750",
        files: { password: { ref: "op://V/i/p", mode: "0440" } },
        envFiles: { "app.env": { vars: { K: "op://V/i/k" } } },
      }),
    );
    return { spec, out, env: { CREDENTIALS_DIRECTORY: creds } };
  };

  it("writes every output with the spec's owner and modes", async () => {
    const { spec, out, env } = setup({ password: "pa$$ ✓", "app.env": 'K="v"\n' });
    const written = await runInstall({ specFile: spec, log: silentLogger, env });
    expect(written.sort()).toEqual([join(out, "app.env"), join(out, "password")]);
    expect(readFileSync(join(out, "password"), "utf8")).toBe("pa$$ ✓");
    const st = statSync(join(out, "password"));
    expect({ uid: st.uid, gid: st.gid, mode: st.mode & 0o777 }).toEqual({ uid: account.uid, gid: account.gid, mode: 0o440 });
    expect(statSync(join(out, "app.env")).mode & 0o777).toBe(0o400);
    expect(statSync(out).mode & 0o777).toBe(0o750);
  });

  it("an empty or missing credential fails (75) and writes nothing, leaving previous files untouched", async () => {
    const { spec, out, env } = setup({ password: "", "app.env": 'K="v"\n' });
    mkdirSync(out, { recursive: true });
    writeFileSync(join(out, "password"), "previous");
    const empty = (await runInstall({ specFile: spec, log: silentLogger, env }).catch((e: unknown) => e)) as HomelabError;
    expect(empty.exitCode).toBe(75);
    expect(empty.message).toBe("app: credential password is empty: the agent could not serve it (see journalctl -u homelab-secrets-agent)");
    expect(readFileSync(join(out, "password"), "utf8")).toBe("previous");
    expect(existsSync(join(out, "app.env"))).toBe(false);

    const other = setup({ password: "x", "app.env": undefined });
    const missing = (await runInstall({ specFile: other.spec, log: silentLogger, env: other.env }).catch(
      (e: unknown) => e,
    )) as HomelabError;
    expect(missing.exitCode).toBe(75);
    expect(missing.message).toMatch(/^app: credential app\.env was not loaded \(ENOENT\)/);
    expect(existsSync(other.out)).toBe(false);
  });

  it("without $CREDENTIALS_DIRECTORY it is a configuration error (78)", async () => {
    const { spec } = setup({ password: "x", "app.env": "K=1\n" });
    const error = (await runInstall({ specFile: spec, log: silentLogger, env: {} }).catch((e: unknown) => e)) as HomelabError;
    expect(error.exitCode).toBe(78);
  });
});
