import { execFileSync } from "node:child_process";
import { randomBytes } from "node:crypto";

/**
 * Root-only suites create real users, chown real files and mount tmpfs. Off root they are
 * skipped and say so; in CI (CI=true, which runs as root) a missing prerequisite is a failure.
 */
export const isRoot = process.geteuid?.() === 0;

export function rootSkipReason(extraTools: string[] = []): string | undefined {
  const missing = ["useradd", "userdel", "mount", ...extraTools].filter((tool) => !hasCommand(tool));
  const reason = !isRoot ? "not running as root" : missing.length > 0 ? `missing tools: ${missing.join(", ")}` : undefined;
  if (reason === undefined) return undefined;
  if (process.env["CI"] === "true") throw new Error(`root suite cannot run in CI: ${reason}`);
  console.warn(`\n*** SKIPPED root-level suite: ${reason}. Run the tests as root to exercise real users, chown and tmpfs. ***\n`);
  return reason;
}

export function hasCommand(name: string): boolean {
  try {
    execFileSync("sh", ["-c", `command -v ${name}`], { stdio: "ignore" });
    return true;
  } catch {
    return false;
  }
}

export interface TestAccount {
  readonly name: string;
  readonly uid: number;
  readonly gid: number;
  remove(): void;
}

/** A real system user with its own group, removed by `remove()`. */
export function createAccount(prefix = "hst"): TestAccount {
  const name = `${prefix}${randomBytes(3).toString("hex")}`;
  execFileSync("useradd", ["--system", "--user-group", "--no-create-home", "--shell", "/usr/sbin/nologin", name]);
  const uid = Number(execFileSync("id", ["-u", name], { encoding: "utf8" }).trim());
  const gid = Number(execFileSync("id", ["-g", name], { encoding: "utf8" }).trim());
  return {
    name,
    uid,
    gid,
    remove() {
      execFileSync("userdel", [name], { stdio: "ignore" });
      try {
        execFileSync("groupdel", [name], { stdio: "ignore" });
      } catch {
        // userdel already removed the user's own group.
      }
    },
  };
}
