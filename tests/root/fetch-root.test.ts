import { execFileSync } from "node:child_process";
import {
  chmodSync,
  chownSync,
  existsSync,
  lstatSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  readdirSync,
  rmSync,
  symlinkSync,
  writeFileSync,
} from "node:fs";
import { createServer, type Server, type Socket } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { execa } from "execa";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createAccount, rootSkipReason, type TestAccount } from "./root-env.js";

const cli = join(import.meta.dirname, "../../helper/dist/cli.js");
const skip = rootSkipReason(["umount"]);

interface Vault {
  vaults: Record<string, { items: Record<string, { fields: Record<string, string>; sections?: Record<string, Record<string, string>> }> }>;
}

describe.skipIf(skip !== undefined)("fetch as root: real users, ownership, atomicity", () => {
  let work: string;
  let svc: TestAccount;
  let other: TestAccount;
  const values = {
    password: 's3cr3t-pass"word$HOME`x`\\',
    apiKey: "api-key-0123456789",
    user: "admin",
  };

  const vault = (overrides: Partial<typeof values> = {}, extraFields: Record<string, string> = {}): Vault => {
    const v = { ...values, ...overrides };
    return {
      vaults: {
        Lab: {
          items: {
            App: { fields: { password: v.password, user: v.user, ...extraFields }, sections: { API: { key: v.apiKey } } },
          },
        },
      },
    };
  };

  const spec = (outputDir: string, vaultPath: string, extra: Record<string, unknown> = {}) => ({
    version: 1,
    name: "app",
    outputDir,
    owner: svc.name,
    group: other.name,
    dirMode: "0750",
    source: { type: "file", path: vaultPath },
    files: { password: { ref: "op://Lab/App/password", mode: "0400" }, "api-key": { ref: "op://Lab/App/API/key", mode: "0440" } },
    envFiles: { "app.env": { mode: "0400", vars: { APP_PASSWORD: "op://Lab/App/password", APP_USER: "op://Lab/App/user" } } },
    templates: { "config.ini": { mode: "0400", content: "[auth]\nuser = {{ op://Lab/App/user }}\nkey = {{op://Lab/App/API/key}}\n" } },
    ...extra,
  });

  /** Write a vault + spec pair into a fresh directory and return the spec path. */
  const setup = (name: string, outputDir: string, v: Vault = vault(), extra: Record<string, unknown> = {}) => {
    const dir = join(work, name);
    mkdirSync(dir, { recursive: true });
    writeFileSync(join(dir, "vault.json"), JSON.stringify(v), { mode: 0o600 });
    writeFileSync(join(dir, "spec.json"), JSON.stringify(spec(outputDir, join(dir, "vault.json"), extra)));
    return { specFile: join(dir, "spec.json"), vaultFile: join(dir, "vault.json") };
  };

  const fetch = (specFile: string, args: string[] = [], env: Record<string, string> = {}) =>
    execa("node", [cli, "fetch", "--spec", specFile, ...args], { reject: false, env: { ...env, JOURNAL_STREAM: "" }, extendEnv: true });

  const snapshot = (dir: string) =>
    Object.fromEntries(
      readdirSync(dir).map((name) => {
        const stats = lstatSync(join(dir, name));
        return [
          name,
          {
            content: readFileSync(join(dir, name)).toString("base64"),
            ino: stats.ino,
            mtimeMs: stats.mtimeMs,
            mode: stats.mode,
            uid: stats.uid,
          },
        ];
      }),
    );

  beforeAll(() => {
    work = mkdtempSync(join(tmpdir(), "hs-root-"));
    chmodSync(work, 0o755);
    svc = createAccount();
    other = createAccount();
  });

  afterAll(() => {
    svc?.remove();
    other?.remove();
    rmSync(work, { recursive: true, force: true });
  });

  it("writes every output with the spec's owner, group and modes", async () => {
    const out = join(work, "run-a", "app-secrets");
    const { specFile } = setup("a", out);
    const result = await fetch(specFile);
    expect(result.stderr).toContain("wrote 4 file(s)");
    expect(result.exitCode).toBe(0);

    const dir = lstatSync(out);
    expect([dir.uid, dir.gid, dir.mode & 0o7777]).toEqual([svc.uid, other.gid, 0o750]);
    const expectations: Record<string, number> = { password: 0o400, "api-key": 0o440, "app.env": 0o400, "config.ini": 0o400 };
    for (const [name, mode] of Object.entries(expectations)) {
      const stats = lstatSync(join(out, name));
      expect(stats.isFile(), name).toBe(true);
      expect([stats.uid, stats.gid, stats.mode & 0o7777], name).toEqual([svc.uid, other.gid, mode]);
    }
    expect(readFileSync(join(out, "password"), "utf8")).toBe(values.password);
    expect(readFileSync(join(out, "config.ini"), "utf8")).toBe(`[auth]\nuser = admin\nkey = ${values.apiKey}\n`);
    // The env file reads back through a real shell as the exact value.
    const viaShell = execFileSync("bash", ["-c", `set -a; . "${join(out, "app.env")}"; printf '%s' "$APP_PASSWORD"`]);
    expect(viaShell.toString()).toBe(values.password);
    expect(readdirSync(out).filter((n) => n.endsWith(".hs-tmp"))).toEqual([]);

    // The service account can read its files; a third user cannot even enter the directory.
    const asSvc = execFileSync("setpriv", [
      "--reuid",
      String(svc.uid),
      "--regid",
      String(svc.gid),
      "--clear-groups",
      "cat",
      join(out, "password"),
    ]);
    expect(asSvc.toString()).toBe(values.password);
    const nobody = await execa("setpriv", ["--reuid=65534", "--regid=65534", "--clear-groups", "cat", join(out, "password")], {
      reject: false,
    });
    expect(nobody.exitCode).not.toBe(0);
  });

  it("refetching replaces values atomically (new inode, same owner)", async () => {
    const out = join(work, "run-b", "app-secrets");
    const { specFile, vaultFile } = setup("b", out);
    expect((await fetch(specFile)).exitCode).toBe(0);
    const before = snapshot(out);
    writeFileSync(vaultFile, JSON.stringify(vault({ password: "rotated" })));
    expect((await fetch(specFile)).exitCode).toBe(0);
    const after = snapshot(out);
    expect(readFileSync(join(out, "password"), "utf8")).toBe("rotated");
    expect(after["password"]!.ino).not.toBe(before["password"]!.ino);
    expect(after["password"]!.uid).toBe(svc.uid);
  });

  it("all or nothing: a missing reference writes nothing and leaves the previous files byte-identical", async () => {
    const out = join(work, "run-c", "app-secrets");
    const { specFile, vaultFile } = setup("c", out);
    expect((await fetch(specFile)).exitCode).toBe(0);
    const before = snapshot(out);

    const broken = vault({ password: "would-be-new" });
    delete (broken.vaults["Lab"]!.items["App"]!.sections as Record<string, unknown>)["API"];
    writeFileSync(vaultFile, JSON.stringify(broken));
    const result = await fetch(specFile);
    expect(result.exitCode).toBe(69);
    expect(result.stderr).toContain("op://Lab/App/API/key");
    expect(result.stderr).not.toContain("would-be-new");
    expect(snapshot(out)).toEqual(before);
  });

  it("an unrepresentable env value is refused (65) before anything is written", async () => {
    const out = join(work, "run-d", "app-secrets");
    const { specFile, vaultFile } = setup("d", out);
    expect((await fetch(specFile)).exitCode).toBe(0);
    const before = snapshot(out);
    writeFileSync(vaultFile, JSON.stringify(vault({ password: "nul\u0000inside" })));
    const result = await fetch(specFile);
    expect(result.exitCode).toBe(65);
    expect(result.stderr).toContain("APP_PASSWORD");
    expect(result.stderr).not.toContain("inside");
    expect(snapshot(out)).toEqual(before);
  });

  describe("on a full filesystem (a real 64 KiB tmpfs)", () => {
    let mountPoint: string;
    beforeAll(() => {
      mountPoint = mkdtempSync(join(tmpdir(), "hs-tmpfs-"));
      execFileSync("mount", ["-t", "tmpfs", "-o", "size=64k,mode=0755", "hs-enospc", mountPoint]);
    });
    afterAll(() => {
      execFileSync("umount", [mountPoint]);
      rmSync(mountPoint, { recursive: true, force: true });
    });

    it("ENOSPC exits 73, keeps the old files intact and leaves no temp files", async () => {
      const out = join(mountPoint, "app-secrets");
      const { specFile, vaultFile } = setup("e", out);
      expect((await fetch(specFile)).exitCode).toBe(0);
      const before = snapshot(out);
      // Two copies of a 48 KiB value (raw file + env file) cannot fit in 64 KiB.
      writeFileSync(vaultFile, JSON.stringify(vault({ password: "x".repeat(48 * 1024) })));
      const result = await fetch(specFile);
      expect(result.exitCode).toBe(73);
      expect(result.stderr).toMatch(/no space left on device/);
      expect(snapshot(out)).toEqual(before);
      expect(readdirSync(out).filter((n) => n.endsWith(".hs-tmp"))).toEqual([]);
    });
  });

  it("a symlink planted at a target is replaced, never followed", async () => {
    const out = join(work, "run-f", "app-secrets");
    const { specFile } = setup("f", out);
    expect((await fetch(specFile)).exitCode).toBe(0);
    const victim = join(work, "victim");
    writeFileSync(victim, "do not touch", { mode: 0o644 });
    rmSync(join(out, "password"));
    symlinkSync(victim, join(out, "password"));
    // Planted by the service user, who owns the directory.
    execFileSync("chown", ["-h", `${svc.uid}:${svc.gid}`, join(out, "password")]);

    expect((await fetch(specFile)).exitCode).toBe(0);
    expect(readFileSync(victim, "utf8")).toBe("do not touch");
    expect(lstatSync(victim).mode & 0o777).toBe(0o644);
    expect(lstatSync(join(out, "password")).isSymbolicLink()).toBe(false);
    expect(readFileSync(join(out, "password"), "utf8")).toBe(values.password);
  });

  it("refuses an output directory below a directory another user controls", async () => {
    const userDir = join(work, "owned-by-user");
    mkdirSync(userDir, { mode: 0o755 });
    chownSync(userDir, svc.uid, svc.gid);
    const { specFile } = setup("g", join(userDir, "app-secrets"));
    const result = await fetch(specFile);
    expect(result.exitCode).toBe(73);
    expect(result.stderr).toMatch(/refusing to write below .*owned-by-user/);
    expect(existsSync(join(userDir, "app-secrets"))).toBe(false);
  });

  it("refuses to follow a symlinked output directory that is not owned by root", async () => {
    const real = join(work, "real-target");
    mkdirSync(real);
    const link = join(work, "link-to-target");
    symlinkSync(real, link);
    execFileSync("chown", ["-h", `${svc.uid}:${svc.gid}`, link]);
    const { specFile } = setup("h", join(link, "app-secrets"));
    const result = await fetch(specFile);
    expect(result.exitCode).toBe(73);
    expect(readdirSync(real)).toEqual([]);
  });

  describe("inside a directory others can write to (sticky, like /tmp or /run/lock)", () => {
    // Sticky keeps everyone but an entry's owner from renaming it; the owner still can, and
    // so can swap the directory for a symlink between the helper's checks and the chown,
    // chmod, writes and unlinks it does by path (shown with a renameat2(RENAME_EXCHANGE)
    // loop: root chowned a root-only directory to the service user).
    let sticky: string;
    beforeAll(() => {
      sticky = join(work, "sticky");
      mkdirSync(sticky);
      chmodSync(sticky, 0o1777);
    });

    it("refuses a directory there that another user owns: no chown, no chmod, nothing written", async () => {
      const out = join(sticky, "planted");
      mkdirSync(out);
      chmodSync(out, 0o700);
      chownSync(out, other.uid, other.gid);
      const { specFile } = setup("sticky-planted", out);
      const result = await fetch(specFile);
      expect(result.exitCode).toBe(73);
      expect(result.stderr).toMatch(/refusing to write into .*planted: owned by uid \d+ inside .*sticky, which others can write to/);
      const stats = lstatSync(out);
      expect([stats.uid, stats.gid, stats.mode & 0o7777]).toEqual([other.uid, other.gid, 0o700]);
      expect(readdirSync(out)).toEqual([]);
    });

    it("refuses to hand a new directory there to the service user (it could swap it once it owns it)", async () => {
      const out = join(sticky, "fresh");
      const { specFile } = setup("sticky-fresh", out);
      const result = await fetch(specFile);
      expect(result.exitCode).toBe(73);
      expect(result.stderr).toMatch(/refusing to hand .*fresh to uid \d+: .*sticky is writable by others/);
      expect(existsSync(out)).toBe(false);
    });

    it("cleanup refuses a directory there that the service user owns and unlinks nothing", async () => {
      const out = join(sticky, "svc-owned");
      mkdirSync(out);
      writeFileSync(join(out, "password"), "keep");
      chownSync(out, svc.uid, svc.gid);
      const { specFile } = setup("sticky-cleanup", out);
      const result = await execa("node", [cli, "cleanup", "--spec", specFile], { reject: false });
      expect(result.exitCode).toBe(73);
      expect(readFileSync(join(out, "password"), "utf8")).toBe("keep");
    });

    it("still writes below a root-owned directory there, and for root itself directly there", async () => {
      mkdirSync(join(sticky, "root-owned"));
      const below = join(sticky, "root-owned", "app-secrets");
      expect((await fetch(setup("sticky-below", below).specFile)).exitCode).toBe(0);
      expect(lstatSync(join(below, "password")).uid).toBe(svc.uid);

      const direct = join(sticky, "for-root");
      const { specFile } = setup("sticky-root", direct, vault(), { owner: undefined, group: undefined, dirMode: undefined });
      expect((await fetch(specFile)).exitCode).toBe(0);
      expect([lstatSync(direct).uid, lstatSync(join(direct, "password")).uid]).toEqual([0, 0]);
    });
  });

  it("cleanup removes exactly what fetch wrote and the empty directory", async () => {
    const out = join(work, "run-i", "app-secrets");
    const { specFile } = setup("i", out);
    expect((await fetch(specFile)).exitCode).toBe(0);
    writeFileSync(join(out, ".password.0123456789abcdef.hs-tmp"), "stale");
    const result = await execa("node", [cli, "cleanup", "--spec", specFile], { reject: false });
    expect(result.exitCode).toBe(0);
    expect(existsSync(out)).toBe(false);

    expect((await fetch(specFile)).exitCode).toBe(0);
    writeFileSync(join(out, "not-ours"), "keep");
    await execa("node", [cli, "cleanup", "--spec", specFile]);
    expect(readdirSync(out)).toEqual(["not-ours"]);
  });

  describe("secrets never leak", () => {
    let server: Server;
    let port: number;
    const sockets = new Set<Socket>();
    beforeAll(async () => {
      // A 1Password sign-in host that accepts connections and never answers, so the helper
      // stays alive holding the token while we look at it from outside.
      server = createServer((socket) => sockets.add(socket));
      await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
      port = (server.address() as { port: number }).port;
    });
    afterAll(async () => {
      for (const socket of sockets) socket.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    });

    it("the token is in no argv, environment or output of the running helper", async () => {
      const credentials = mkdtempSync(join(tmpdir(), "hs-cred-"));
      const marker = `tok${Date.now()}`;
      const token = `ops_${Buffer.from(JSON.stringify(wellFormedCredentials(`127.0.0.1:${port}`, marker)))
        .toString("base64")
        .replace(/=+$/, "")}`;
      writeFileSync(join(credentials, "op-token"), `${token}\n`, { mode: 0o400 });
      const specDir = join(work, "leak");
      mkdirSync(specDir, { recursive: true });
      const specFile = join(specDir, "spec.json");
      writeFileSync(
        specFile,
        JSON.stringify({ ...spec(join(work, "run-leak"), "/unused"), source: { type: "onepassword", tokenCredential: "op-token" } }),
      );

      const child = execa("node", [cli, "fetch", "--spec", specFile, "--deadline", "4", "--verbose"], {
        reject: false,
        env: { CREDENTIALS_DIRECTORY: credentials },
      });
      const pid = child.pid!;
      const started = Date.now();
      // Give it time to read the token and start talking to the sign-in host.
      await new Promise((r) => setTimeout(r, 1500));
      const cmdline = readFileSync(`/proc/${pid}/cmdline`);
      const environ = readFileSync(`/proc/${pid}/environ`);
      const result = await child;

      expect(result.exitCode).toBe(75);
      expect(result.stderr).toMatch(/deadline of 4s/);
      // The deadline ends the process even though the SDK's own connect timeout is ~10 s.
      expect(Date.now() - started).toBeLessThan(8000);
      for (const haystack of [cmdline.toString(), environ.toString(), result.stdout, result.stderr]) {
        expect(haystack).not.toContain(token);
        expect(haystack).not.toContain(marker);
        expect(haystack).not.toContain(token.slice(4, 40));
      }
      expect(environ.toString()).toContain(`CREDENTIALS_DIRECTORY=${credentials}`);
      rmSync(credentials, { recursive: true, force: true });
    });

    it("values appear in no log line, even with --verbose, and no temp file survives", async () => {
      const out = join(work, "run-j", "app-secrets");
      const { specFile } = setup("j", out);
      const result = await fetch(specFile, ["--verbose"]);
      expect(result.exitCode).toBe(0);
      expect(result.stderr).toContain("op://Lab/App/password");
      for (const value of Object.values(values)) {
        expect(result.stderr).not.toContain(value);
        expect(result.stdout).not.toContain(value);
      }
      expect(readdirSync(out).some((n) => n.includes("tmp"))).toBe(false);
    });
  });
});

/** A service-account token the real SDK parses as well formed: "ops_" and base64url JSON with these credential fields (none of them valid). */
function wellFormedCredentials(signInAddress: string, marker: string) {
  const b64url = (b: Buffer) => b.toString("base64url");
  return {
    signInAddress,
    email: `${marker}@example.invalid`,
    secretKey: "A3-ABCDEF-GHJKLM-NPQRS-TVWXY-Z2345-6789A",
    srpX: "a".repeat(64),
    muk: { alg: "A256GCM", ext: true, k: b64url(Buffer.alloc(32, 7)), key_ops: ["encrypt", "decrypt"], kty: "oct", kid: "mp" },
    userAuth: { method: "SRPg-4096", alg: "PBES2g-HS256", iterations: 100000, salt: b64url(Buffer.alloc(16, 1)) },
    deviceUuid: "abcdefghijklmnopqrstuvwxyz",
    throttleSecret: { seed: "a".repeat(64), uuid: "abcdefghijklmnopqrstuvwxyz" },
  };
}
