/**
 * The real @1password/sdk (WASM core), offline, through the CLI: bad tokens, an unreachable
 * sign-in address, and a server that accepts connections but never answers.
 */
import { afterAll, beforeAll, describe, expect, it, onTestFinished } from "vitest";
import { randomBytes } from "node:crypto";
import { existsSync } from "node:fs";
import { chmod, mkdir, readFile, writeFile } from "node:fs/promises";
import net from "node:net";
import { join } from "node:path";
import { execa } from "execa";
import { cliPath, makeSpec, makeTempDir, removeTempDirs, runCli, writeSpec, writeVault, type RunResult } from "../helpers.js";

/** A service-account token that is well formed, pointing its sign-in address at 127.0.0.1:port. */
function wellFormedToken(port: number, encoding: "base64url" | "base64" = "base64url"): string {
  const credentials = {
    signInAddress: `127.0.0.1:${port}`,
    email: "svc@example.invalid",
    secretKey: "A3-ABCDEF-GHJKLM-NPQRS-TVWXY-Z2345-6789A",
    srpX: "a".repeat(64),
    muk: { alg: "A256GCM", ext: true, k: randomBytes(32).toString("base64url"), key_ops: ["encrypt", "decrypt"], kty: "oct", kid: "mp" },
    userAuth: { method: "SRPg-4096", alg: "PBES2g-HS256", iterations: 100000, salt: randomBytes(16).toString("base64url") },
    deviceUuid: "abcdefghijklmnopqrstuvwxyz",
    throttleSecret: { seed: "a".repeat(64), uuid: "abcdefghijklmnopqrstuvwxyz" },
  };
  return `ops_${Buffer.from(JSON.stringify(credentials)).toString(encoding).replace(/=+$/, "")}`;
}

/** A port nothing listens on: bind an ephemeral one, then close it. */
async function closedPort(): Promise<number> {
  const server = net.createServer();
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as net.AddressInfo;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

let dir: string;
let spec: string;
let hookPath: string;
let markerPath: string;
const sockets = new Set<net.Socket>();
let silentServer: net.Server;
let silentPort: number;
let silentConnections = 0;

beforeAll(async () => {
  dir = await makeTempDir("hs-sdk-");
  spec = await writeSpec(dir, makeSpec(join(dir, "out"), { source: { type: "onepassword" } }));
  // A --require preload that records every module request naming the SDK (CommonJS, so
  // its own require("@1password/sdk-core") goes through Module._load).
  hookPath = join(dir, "sdk-probe.cjs");
  markerPath = join(dir, "sdk-loaded");
  await writeFile(
    hookPath,
    `const Module = require("node:module");
const fs = require("node:fs");
const load = Module._load;
Module._load = function (request, ...rest) {
  if (request.includes("@1password/sdk")) fs.appendFileSync(process.env.HS_SDK_MARKER, request + "\\n");
  return load.call(this, request, ...rest);
};
`,
  );
  silentServer = net.createServer((socket) => {
    silentConnections++;
    sockets.add(socket);
    socket.on("data", () => undefined); // read and never answer
    socket.on("error", () => undefined);
    socket.on("close", () => sockets.delete(socket));
  });
  await new Promise<void>((resolve) => silentServer.listen(0, "127.0.0.1", resolve));
  silentPort = (silentServer.address() as net.AddressInfo).port;
});

afterAll(async () => {
  for (const socket of sockets) socket.destroy();
  await new Promise<void>((resolve) => silentServer.close(() => resolve()));
  await removeTempDirs();
});

let credentialCount = 0;
/** A fresh $CREDENTIALS_DIRECTORY holding `op-token` (mode 0400, like systemd's). */
async function credentialsWith(token: string): Promise<string> {
  const credentials = join(dir, `credentials-${++credentialCount}`);
  // Like systemd's credential directory: 0500 with a 0400 file, made read-only after writing
  // (so this works without root too).
  await mkdir(credentials, { mode: 0o700 });
  await writeFile(join(credentials, "op-token"), `${token}\n`);
  await chmod(join(credentials, "op-token"), 0o400);
  await chmod(credentials, 0o500);
  return credentials;
}

interface TimedResult extends RunResult {
  /** Module requests naming the SDK that the CLI process made. */
  readonly sdkLoaded: string[];
  /**
   * Milliseconds from the "resolving …" debug line (logged as the deadline starts) to the
   * process's exit: the part of the run the deadline governs, without node's start-up,
   * which a busy 2-core machine can stretch by a second or more.
   */
  readonly afterResolvingMs: number;
}

async function fetchWithToken(token: string, extra: string[] = []): Promise<TimedResult> {
  const credentials = await credentialsWith(token);
  const marker = `${markerPath}-${credentialCount}`;
  const started = performance.now();
  let resolvingAt: number | undefined;
  let stderr = "";
  const child = execa(process.execPath, ["--require", hookPath, cliPath, "fetch", "--spec", spec, "--verbose", ...extra], {
    env: { PATH: process.env["PATH"] ?? "/usr/bin:/bin", CREDENTIALS_DIRECTORY: credentials, HS_SDK_MARKER: marker },
    extendEnv: false,
    reject: false,
    stdin: "ignore",
    timeout: 30_000,
  });
  child.stderr.on("data", (chunk: Buffer) => {
    stderr += chunk.toString("utf8");
    if (resolvingAt === undefined && /debug: resolving \d+ reference/.test(stderr)) resolvingAt = performance.now();
  });
  const result = await child;
  const ended = performance.now();
  const sdkLoaded = existsSync(marker) ? (await readFile(marker, "utf8")).trim().split("\n") : [];
  return {
    exitCode: result.exitCode ?? -1,
    stdout: String(result.stdout),
    stderr,
    durationMs: ended - started,
    afterResolvingMs: resolvingAt === undefined ? Number.NaN : ended - resolvingAt,
    sdkLoaded,
  };
}

/** The one error line; it must name the reference the service is missing. */
function errorLine(result: RunResult): string {
  const lines = result.stderr.split("\n").filter((l) => l.startsWith("homelab-secrets: error: "));
  expect(lines).toHaveLength(1);
  expect(lines[0]).toContain("op://Homelab/Item/password");
  return lines[0]!;
}

function expectNoTokenText(result: RunResult, token: string) {
  const output = result.stdout + result.stderr;
  expect(output).not.toContain(token);
  // Not even a recognisable piece of it.
  const body = token.slice(4);
  for (let i = 0; i + 12 <= body.length; i += 12) expect(output).not.toContain(body.slice(i, i + 12));
}

describe("@1password/sdk offline, through the CLI", () => {
  it("(a) a malformed token fails fast with 77 and a clear message, without echoing the token", async () => {
    const token = "ops_notvalid";
    const result = await fetchWithToken(token);
    console.info(`[sdk-offline] malformed token: exit ${result.exitCode} after ${Math.round(result.durationMs)} ms`);
    expect(result.exitCode).toBe(77);
    expect(result.durationMs).toBeLessThan(5000);
    expect(result.sdkLoaded).toContain("@1password/sdk-core");
    expect(errorLine(result)).toMatch(/1Password rejected the service account token: invalid service account token/);
    expect(result.stderr).toMatch(/loading the 1Password SDK/);
    // Permanent: exactly one attempt, no retry.
    expect(result.stderr).not.toMatch(/retrying/);
    expect(result.stderr).not.toContain("notvalid");
    expect(existsSync(join(dir, "out"))).toBe(false);
  });

  it("(b) a token that is not a service-account token (no ops_ prefix) is a configuration error, 78, before the SDK loads", async () => {
    const token = "eyJhbGciOiJIUzI1NiJ9.connect-style-token-abc123";
    const result = await fetchWithToken(token);
    expect(result.exitCode).toBe(78);
    expect(result.stderr).toMatch(/not a service account token \(it must start with "ops_"\)/);
    expect(result.stderr).not.toContain("connect-style-token");
    expect(result.sdkLoaded).toEqual([]);
  });

  it.each(["base64url", "base64"] as const)(
    "(c) a well-formed token (%s) whose sign-in address is a closed port: retried, then 75 within the deadline",
    async (encoding) => {
      const port = await closedPort();
      const token = wellFormedToken(port, encoding);
      const result = await fetchWithToken(token, ["--deadline", "5"]);
      console.info(
        `[sdk-offline] closed port (${encoding}): exit ${result.exitCode} after ${Math.round(result.durationMs)} ms (${Math.round(result.afterResolvingMs)} ms after the deadline started)`,
      );
      expect(result.exitCode).toBe(75);
      expect(result.sdkLoaded).toContain("@1password/sdk-core");
      const retries = result.stderr
        .split("\n")
        .filter((l) => /1Password: attempt \d+ failed \(1Password is unreachable: .*error sending request\); retrying/.test(l));
      expect(retries.length).toBeGreaterThanOrEqual(1);
      expect(errorLine(result)).toMatch(/deadline of 5s passed|1Password is unreachable/);
      expect(result.afterResolvingMs).toBeLessThan(5000 + 1000);
      expect(result.durationMs).toBeLessThan(10_000);
      expectNoTokenText(result, token);
      expect(existsSync(join(dir, "out"))).toBe(false);
    },
  );

  it("(d) a server that accepts and never answers: 75 at the deadline, not the SDK's own ~10 s timeout", async () => {
    const before = silentConnections;
    const token = wellFormedToken(silentPort);
    const result = await fetchWithToken(token, ["--deadline", "3"]);
    console.info(
      `[sdk-offline] silent server: exit ${result.exitCode} after ${Math.round(result.durationMs)} ms (${Math.round(result.afterResolvingMs)} ms after the deadline started)`,
    );
    expect(silentConnections).toBeGreaterThan(before); // the SDK really did connect and wait
    expect(result.exitCode).toBe(75);
    expect(errorLine(result)).toMatch(/deadline of 3s passed before all references resolved/);
    expect(result.durationMs).toBeGreaterThanOrEqual(3000);
    expect(result.afterResolvingMs).toBeGreaterThanOrEqual(2900);
    expect(result.afterResolvingMs).toBeLessThan(6000);
    // Well short of the SDK's own ~10.5 s connect timeout, even with a slow start-up.
    expect(result.durationMs).toBeLessThan(9000);
    expectNoTokenText(result, token);
  });

  it("(e) SIGTERM while the SDK waits ends the run at once with 75", async () => {
    const credentials = await credentialsWith(wellFormedToken(silentPort));
    const before = silentConnections;
    const child = execa(process.execPath, [cliPath, "fetch", "--spec", spec, "--deadline", "30"], {
      env: { PATH: process.env["PATH"] ?? "/usr/bin:/bin", CREDENTIALS_DIRECTORY: credentials },
      extendEnv: false,
      reject: false,
      stdin: "ignore",
      timeout: 45_000,
    });
    onTestFinished(() => void child.kill("SIGKILL"));
    const waitStarted = performance.now();
    while (silentConnections === before && child.exitCode === null && performance.now() - waitStarted < 30_000) {
      await new Promise((r) => setTimeout(r, 25));
    }
    console.info(`[sdk-offline] SIGTERM: the SDK connected ${Math.round(performance.now() - waitStarted)} ms after the start`);
    expect(child.exitCode, "the CLI ended before the SDK connected").toBeNull();
    expect(silentConnections).toBeGreaterThan(before);
    const killed = performance.now();
    child.kill("SIGTERM");
    const result = await child;
    const afterSignal = performance.now() - killed;
    console.info(`[sdk-offline] SIGTERM: exit ${result.exitCode} ${Math.round(afterSignal)} ms after the signal`);
    expect(result.exitCode).toBe(75);
    expect(String(result.stderr)).toMatch(/received SIGTERM, stopping/);
    expect(String(result.stderr)).toMatch(/stopped by SIGTERM/);
    expect(afterSignal).toBeLessThan(2000);
  });
});

describe("commands that do not need 1Password never load the SDK", () => {
  it("check --spec, and fetch/read with the file source", async () => {
    const vault = await writeVault(dir, { Homelab: { Item: { fields: { password: "file-source-value" } } } });
    const fileSpec = await writeSpec(dir, makeSpec(join(dir, "file-out")), "file-spec.json");
    const runs: Array<[string, string[]]> = [
      ["check (onepassword spec)", ["check", "--spec", spec, "--verbose"]],
      ["fetch --source file:", ["fetch", "--spec", fileSpec, "--source", `file:${vault}`, "--verbose"]],
      ["read --source file:", ["read", "op://Homelab/Item/password", "--source", `file:${vault}`, "--verbose"]],
    ];
    for (const [what, args] of runs) {
      const marker = join(dir, `marker-${what.replace(/\W+/g, "-")}`);
      const result = await runCli(args, { env: { HS_SDK_MARKER: marker }, nodeArgs: ["--require", hookPath] });
      expect(result.exitCode, `${what}: ${result.stderr}`).toBe(0);
      expect(result.stderr, what).not.toMatch(/loading the 1Password SDK/);
      expect(existsSync(marker), `${what} loaded the SDK`).toBe(false);
    }
    expect(await readFile(join(dir, "file-out", "secret"), "utf8")).toBe("file-source-value");
  });
});
