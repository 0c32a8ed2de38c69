import { lstat, mkdtemp, readFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import type { Logger } from "../log.js";
import { runFetch } from "./fetch.js";

const examples = fileURLToPath(new URL("../../../examples/demo/", import.meta.url));

/**
 * Run `fetch` on the bundled example spec against the bundled demo vault (the `file`
 * source; no 1Password account needed), into a fresh temp directory, and show the result.
 * Demo values are made up, so showing them is the point here.
 */
export async function runDemo(options: { log: Logger; outputDir?: string | undefined }): Promise<string> {
  const outputDir = options.outputDir ?? join(await mkdtemp(join(tmpdir(), "homelab-secrets-demo-")), "demo-secrets");
  const specFile = join(examples, "spec.json");
  const vault = join(examples, "vault.json");
  const result = await runFetch({
    specFile,
    overrides: { source: `file:${vault}` },
    deadlineSeconds: 10,
    serialize: false,
    outputDir,
    log: options.log,
  });
  const lines = [
    `homelab-secrets demo: ${specFile}`,
    `  source: file:${vault}`,
    `  wrote ${result.written.length} file(s) from ${result.references} reference(s):`,
    "",
  ];
  const dir = await lstat(result.outputDir);
  lines.push(`${modeString(dir.mode)} ${dir.uid}:${dir.gid} ${result.outputDir}/`);
  for (const path of result.written) {
    const stats = await lstat(path);
    lines.push(`${modeString(stats.mode)} ${stats.uid}:${stats.gid} ${String(stats.size).padStart(5)} ${path}`);
  }
  for (const path of result.written) {
    lines.push("", `--- ${path}`, (await readFile(path, "utf8")).replace(/\n$/, "") + "", `---`);
  }
  lines.push("", `Remove it with: homelab-secrets cleanup --spec ${specFile} --output-dir ${result.outputDir}`);
  return lines.join("\n") + "\n";
}

function modeString(mode: number): string {
  const kind = (mode & 0o170000) === 0o040000 ? "d" : "-";
  const bits = "rwxrwxrwx";
  return kind + [...bits].map((c, i) => ((mode >> (8 - i)) & 1 ? c : "-")).join("") + ` (${(mode & 0o7777).toString(8).padStart(4, "0")})`;
}
