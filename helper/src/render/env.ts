import { dataError } from "../errors.js";

export const envKeyPattern = /^[A-Za-z_][A-Za-z0-9_]*$/;

/** execve's per-string limit (MAX_ARG_STRLEN) counts the terminating NUL. */
export const maxEnvEntryBytes = 131072 - 1;

/**
 * One `KEY="value"` line per variable, with a backslash before `\`, `"`, `$` and backtick.
 * This round-trips byte for byte through systemd's EnvironmentFile=, dash and bash.
 * Values systemd cannot carry are refused, naming the variable but never the value.
 */
export function encodeEnvFile(vars: ReadonlyArray<readonly [string, string]>, fileName: string): string {
  return vars.map(([key, value]) => encodeEnvLine(key, value, fileName)).join("");
}

export function encodeEnvLine(key: string, value: string, fileName: string): string {
  if (!envKeyPattern.test(key)) throw dataError(`${fileName}: variable name "${key}" is not a valid name`);
  if (value.includes("\0")) throw dataError(`${fileName}: value of ${key} contains a NUL byte, which an environment cannot hold`);
  if (!value.isWellFormed()) throw dataError(`${fileName}: value of ${key} is not valid UTF-8, which systemd refuses`);
  const size = Buffer.byteLength(`${key}=${value}`);
  if (size > maxEnvEntryBytes) {
    throw dataError(`${fileName}: ${key}=… is ${size} bytes; the kernel limit for one variable is ${maxEnvEntryBytes}`);
  }
  return `${key}="${value.replace(/[\\"$`]/g, "\\$&")}"\n`;
}
