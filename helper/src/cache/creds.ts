/**
 * systemd-creds as the cache's cipher. Plaintext only ever crosses a pipe: to its stdin when
 * encrypting, from its stdout when decrypting — never argv, the environment or a file.
 */
import { spawn } from "node:child_process";

/** How to run systemd-creds (tests point `env` at a temporary host key with SYSTEMD_CREDENTIAL_SECRET). */
export interface CredsOptions {
  /** The binary; default `systemd-creds` from PATH. */
  readonly command?: string;
  readonly env?: NodeJS.ProcessEnv;
  /** Kill it after this long (a busy TPM is slow, a hung one must not hang boot); default 20 s. */
  readonly timeoutMs?: number;
}

/** A run's outcome: stdout on success, else one line saying why. */
export type CredsResult = { readonly ok: true; readonly stdout: Buffer } | { readonly ok: false; readonly why: string };

/** `systemd-creds encrypt --with-key=auto --name=NAME - OUT`, the plaintext on stdin. */
export function encrypt(name: string, plaintext: Buffer, out: string, options: CredsOptions = {}): Promise<CredsResult> {
  return runCreds(["encrypt", "--with-key=auto", `--name=${name}`, "-", out], plaintext, options);
}

/** `systemd-creds decrypt --name=NAME FILE -`: the plaintext from stdout. */
export function decrypt(name: string, file: string, options: CredsOptions = {}): Promise<CredsResult> {
  return runCreds(["decrypt", `--name=${name}`, file, "-"], undefined, options);
}

function runCreds(args: string[], input: Buffer | undefined, options: CredsOptions): Promise<CredsResult> {
  const command = options.command ?? "systemd-creds";
  return new Promise((resolve) => {
    const child = spawn(command, args, {
      stdio: [input === undefined ? "ignore" : "pipe", "pipe", "pipe"],
      env: options.env ?? process.env,
    });
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    child.stdout!.on("data", (b: Buffer) => out.push(b));
    child.stderr!.on("data", (b: Buffer) => err.push(b));
    const timer = setTimeout(() => child.kill("SIGKILL"), options.timeoutMs ?? 20_000);
    child.on("error", (e: NodeJS.ErrnoException) => {
      clearTimeout(timer);
      resolve({ ok: false, why: e.code === "ENOENT" ? `${command} not found` : `${command}: ${e.message}` });
    });
    child.on("close", (code, signal) => {
      clearTimeout(timer);
      const stdout = Buffer.concat(out);
      if (code === 0) return resolve({ ok: true, stdout });
      stdout.fill(0);
      // systemd-creds' messages name files, keys and credential names, never the data.
      const lines = Buffer.concat(err)
        .toString("utf8")
        .split("\n")
        .map((l) => l.trim())
        .filter((l) => l !== "" && !/not located on encrypted media/.test(l));
      resolve({
        ok: false,
        why: `systemd-creds ${args[0]} ${signal ? `killed by ${signal}` : `exited ${code}`}${lines.length ? `: ${lines.join("; ")}` : ""}`,
      });
    });
    if (child.stdin) {
      child.stdin.on("error", () => {}); // it may exit before reading all of it; its exit code says why
      child.stdin.end(input);
    }
  });
}
