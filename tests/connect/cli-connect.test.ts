// The built CLI (helper/dist/cli.js) against the fake Connect server: exit codes and files.
import { existsSync } from "node:fs";
import { chmod, mkdir, mkdtemp, readFile, rm, stat, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join, resolve as resolvePath } from "node:path";
import { execa } from "execa";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { startFakeConnect } from "./fake-connect.mjs";

const cli = resolvePath(import.meta.dirname, "../../helper/dist/cli.js");
const built = existsSync(cli);
const token = "cli-connect-token-4f1c9a7e2b";

const vault = {
  vaults: {
    Homelab: {
      items: {
        Transmission: { fields: { password: 'pw "transmission" $x' }, sections: { Admin: { email: "admin@example.org" } } },
        Grafana: { fields: { password: "pw-grafana" } },
      },
    },
  },
};

describe.skipIf(!built)("homelab-secrets CLI with the connect source", () => {
  let fake: Awaited<ReturnType<typeof startFakeConnect>>;
  let dir: string;
  let credentials: string;

  beforeAll(async () => {
    fake = await startFakeConnect({ vault, token });
    dir = await mkdtemp(join(tmpdir(), "hs-cli-connect-"));
    credentials = join(dir, "credentials");
    await mkdir(credentials, { mode: 0o700 });
    await writeFile(join(credentials, "op-connect-token"), `${token}\n`, { mode: 0o600 });
  });
  afterAll(async () => {
    await fake.close();
    await rm(dir, { recursive: true, force: true });
  });
  afterEach(() => {
    fake.setFaults([]);
    fake.clearRequests();
  });

  async function writeSpec(name: string, refs: Record<string, string>, envVars?: Record<string, string>) {
    const outputDir = join(dir, "out", name);
    const spec = {
      version: 1,
      name,
      outputDir,
      source: { type: "connect", host: fake.url, tokenCredential: "op-connect-token" },
      files: Object.fromEntries(Object.entries(refs).map(([file, ref]) => [file, { ref, mode: "0400" }])),
      ...(envVars ? { envFiles: { "service.env": { mode: "0400", vars: envVars } } } : {}),
    };
    const file = join(dir, `${name}.json`);
    await writeFile(file, JSON.stringify(spec, null, 2));
    return { file, outputDir };
  }

  const run = (args: string[], env: Record<string, string> = {}) =>
    execa(process.execPath, [cli, ...args], {
      reject: false,
      env: { CREDENTIALS_DIRECTORY: credentials, ...env },
      extendEnv: false,
      timeout: 30_000,
    });

  it("fetch writes every file from Connect (exit 0)", async () => {
    const { file, outputDir } = await writeSpec(
      "ok",
      { "rpc-password": "op://Homelab/Transmission/password", "admin-email": "op://Homelab/Transmission/Admin/email" },
      { GRAFANA_PASSWORD: "op://Homelab/Grafana/password", RPC: "op://Homelab/Transmission/password" },
    );
    const result = await run(["fetch", "--spec", file]);
    expect(result.stderr).not.toContain(token);
    expect(result.exitCode).toBe(0);
    expect(await readFile(join(outputDir, "rpc-password"), "utf8")).toBe('pw "transmission" $x');
    expect(await readFile(join(outputDir, "admin-email"), "utf8")).toBe("admin@example.org");
    expect(await readFile(join(outputDir, "service.env"), "utf8")).toBe(
      'GRAFANA_PASSWORD="pw-grafana"\nRPC="pw \\"transmission\\" \\$x"\n',
    );
    expect((await stat(join(outputDir, "rpc-password"))).mode & 0o777).toBe(0o400);
    // One vault lookup, one title search and one fetch per item.
    expect(fake.requests).toHaveLength(5);
  });

  it("references by vault and item ID cost one request (exit 0)", async () => {
    const vaultId = fake.ids.vaults["Homelab"]!;
    const itemId = fake.ids.items["Homelab"]!["Transmission"]!;
    const { file, outputDir } = await writeSpec("by-id", {
      pw: `op://${vaultId}/${itemId}/password`,
      email: `op://${vaultId}/${itemId}/Admin/email`,
    });
    const result = await run(["fetch", "--spec", file]);
    expect(result.exitCode).toBe(0);
    expect(await readFile(join(outputDir, "pw"), "utf8")).toBe('pw "transmission" $x');
    expect(await readFile(join(outputDir, "email"), "utf8")).toBe("admin@example.org");
    expect(fake.requests.map((r) => r.path)).toEqual([`/v1/vaults/${vaultId}/items/${itemId}`]);
  });

  it("a wrong token exits 77, names no token, writes nothing", async () => {
    const { file, outputDir } = await writeSpec("badtoken", { pw: "op://Homelab/Grafana/password" });
    const badCredentials = join(dir, "bad-credentials");
    await mkdir(badCredentials, { recursive: true, mode: 0o700 });
    await writeFile(join(badCredentials, "op-connect-token"), "not-the-right-token-9d8e7f\n", { mode: 0o600 });
    const result = await run(["fetch", "--spec", file], { CREDENTIALS_DIRECTORY: badCredentials });
    expect(result.exitCode).toBe(77);
    expect(result.stderr).toContain("Connect rejected the token");
    expect(result.stderr).not.toContain("not-the-right-token");
    expect(result.stderr).not.toContain(token);
    expect(existsSync(join(outputDir, "pw"))).toBe(false);
  });

  it("missing references exit 69 naming each, and leave earlier files as they were", async () => {
    const { file, outputDir } = await writeSpec("missing", { pw: "op://Homelab/Grafana/password" });
    expect((await run(["fetch", "--spec", file])).exitCode).toBe(0);
    const spec = JSON.parse(await readFile(file, "utf8")) as { files: Record<string, { ref: string; mode: string }> };
    spec.files["gone"] = { ref: "op://Homelab/Gone/password", mode: "0400" };
    spec.files["nofield"] = { ref: "op://Homelab/Grafana/nothing", mode: "0400" };
    await writeFile(file, JSON.stringify(spec));
    const result = await run(["fetch", "--spec", file]);
    expect(result.exitCode).toBe(69);
    expect(result.stderr).toContain("op://Homelab/Gone/password");
    expect(result.stderr).toContain("op://Homelab/Grafana/nothing");
    expect(result.stderr).not.toContain("pw-grafana");
    expect(await readFile(join(outputDir, "pw"), "utf8")).toBe("pw-grafana");
    expect(existsSync(join(outputDir, "gone"))).toBe(false);
  });

  it("a Connect server that never answers exits 75 at the deadline", async () => {
    const { file } = await writeSpec("hang", { pw: "op://Homelab/Grafana/password" });
    fake.setFaults([{ type: "hang" }]);
    const started = performance.now();
    const result = await run(["fetch", "--spec", file, "--deadline", "2"]);
    const elapsed = performance.now() - started;
    expect(result.exitCode).toBe(75);
    expect(result.stderr).toContain("deadline");
    expect(elapsed).toBeLessThan(6000);
  });

  it("transient 503s are retried inside the run (exit 0)", async () => {
    const { file, outputDir } = await writeSpec("flaky", { pw: "op://Homelab/Grafana/password" });
    fake.setFaults([{ match: "/v1/vaults", type: "status", status: 503, times: 2 }]);
    const result = await run(["fetch", "--spec", file]);
    expect(result.exitCode).toBe(0);
    expect(result.stderr).toMatch(/retrying/);
    expect(await readFile(join(outputDir, "pw"), "utf8")).toBe("pw-grafana");
  });

  it("read with --source connect --connect-host --token-file prints the value", async () => {
    const tokenFile = join(dir, "token");
    await writeFile(tokenFile, token, { mode: 0o600 });
    await chmod(tokenFile, 0o600);
    const result = await run(
      ["read", "op://Homelab/Transmission/Admin/email", "--source", "connect", "--connect-host", fake.url, "--token-file", tokenFile],
      {},
    );
    expect(result.exitCode).toBe(0);
    expect(result.stdout).toBe("admin@example.org");
  });
});
