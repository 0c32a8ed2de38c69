// Security issue 13, item 8: a FIFO where the token should be must not hang `fetch`.
import { execFileSync } from "node:child_process";
import { mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { runCli } from "../helpers.js";

describe("a FIFO as the token", () => {
  let dir: string;
  let spec: string;
  let credentials: string;

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), "hs-token-fifo-"));
    credentials = join(dir, "credentials");
    await mkdir(credentials, { mode: 0o700 });
    // Nobody ever opens these for writing: a blocking open(2) would wait forever.
    execFileSync("mkfifo", ["-m", "0600", join(dir, "token-fifo"), join(credentials, "op-token")]);
    spec = join(dir, "spec.json");
    await writeFile(
      spec,
      JSON.stringify({ version: 1, name: "fifo", outputDir: join(dir, "out"), files: { secret: { ref: "op://V/I/f" } } }),
    );
  });
  afterAll(() => rm(dir, { recursive: true, force: true }));

  // runCli throws when its timeout (far above --deadline) kills the CLI.
  it("as --token-file: refused at once (78), not a hang past --deadline", async () => {
    const result = await runCli(["fetch", "--spec", spec, "--token-file", join(dir, "token-fifo"), "--deadline", "3"], { timeout: 20_000 });
    expect(result.stderr).toContain(`token ${join(dir, "token-fifo")} is not a regular file`);
    expect(result.exitCode).toBe(78);
  });

  it("as $CREDENTIALS_DIRECTORY/op-token: refused at once (78)", async () => {
    const result = await runCli(["fetch", "--spec", spec, "--deadline", "3"], {
      timeout: 20_000,
      env: { CREDENTIALS_DIRECTORY: credentials },
    });
    expect(result.stderr).toContain(`token ${join(credentials, "op-token")} is not a regular file`);
    expect(result.exitCode).toBe(78);
  });

  it("as --spec or as a file-source vault: refused at once (78)", async () => {
    execFileSync("mkfifo", ["-m", "0600", join(dir, "spec-fifo"), join(dir, "vault-fifo")]);
    const asSpec = await runCli(["fetch", "--spec", join(dir, "spec-fifo"), "--deadline", "3"], { timeout: 20_000 });
    expect(asSpec.stderr).toContain(`spec ${join(dir, "spec-fifo")} is not a regular file`);
    expect(asSpec.exitCode).toBe(78);
    const asVault = await runCli(["fetch", "--spec", spec, "--source", `file:${join(dir, "vault-fifo")}`, "--deadline", "3"], {
      timeout: 20_000,
    });
    expect(asVault.stderr).toContain(`vault file ${join(dir, "vault-fifo")} is not a regular file`);
    expect(asVault.exitCode).toBe(78);
  });
});
