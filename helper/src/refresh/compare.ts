import { constants } from "node:fs";
import { open } from "node:fs/promises";
import { basename } from "node:path";
import type { FileToWrite } from "../write.js";

/** Why one output on disk is not what a fetch would write now (never its value). */
export interface Difference {
  readonly name: string;
  readonly path: string;
  readonly reason: string;
}

/** Who runs the comparison: an output without an owner must belong to this uid (fetch chowns nothing then). */
export interface Self {
  readonly uid: number;
}

const octal = (mode: number) => (mode & 0o7777).toString(8).padStart(4, "0");

/**
 * Compare each file's bytes, mode and owner with what is at its path now. A missing path, a
 * symlink (never followed: O_NOFOLLOW) or anything but a regular file differs. Content is read
 * only when the size matches. Reasons name the file and the attribute, never a value.
 */
export async function compareWithDisk(
  files: readonly FileToWrite[],
  self: Self = { uid: process.geteuid?.() ?? 0 },
): Promise<Difference[]> {
  const differences: Difference[] = [];
  for (const file of files) {
    const reason = await differenceOf(file, self);
    if (reason !== undefined) differences.push({ name: basename(file.path), path: file.path, reason });
  }
  return differences;
}

async function differenceOf(file: FileToWrite, self: Self): Promise<string | undefined> {
  let handle: Awaited<ReturnType<typeof open>>;
  try {
    // O_NONBLOCK: a FIFO planted at the path opens at once (and is then refused) instead of hanging.
    handle = await open(file.path, constants.O_RDONLY | constants.O_NOFOLLOW | constants.O_NONBLOCK);
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    if (code === "ENOENT") return "missing";
    if (code === "ELOOP") return "a symlink";
    return `unreadable (${code ?? "unknown error"})`;
  }
  try {
    const stats = await handle.stat();
    if (!stats.isFile()) return "not a regular file";
    if ((stats.mode & 0o7777) !== file.mode) return `mode ${octal(stats.mode)}, should be ${octal(file.mode)}`;
    if (file.owner) {
      if (stats.uid !== file.owner.uid || stats.gid !== file.owner.gid)
        return `owner ${stats.uid}:${stats.gid}, should be ${file.owner.uid}:${file.owner.gid}`;
    } else if (stats.uid !== self.uid) {
      return `owner uid ${stats.uid}, should be ${self.uid}`;
    }
    if (stats.size !== file.content.length) return "content";
    // Read at most one byte more than expected: the file's owner may grow it after the stat,
    // and readFile() would follow it as far as it goes (gigabytes in root's memory).
    const current = Buffer.alloc(file.content.length + 1);
    try {
      let filled = 0;
      for (;;) {
        const { bytesRead } = await handle.read(current, filled, current.length - filled, filled);
        if (bytesRead === 0) break;
        filled += bytesRead;
        if (filled === current.length) return "content";
      }
      const expected = Buffer.from(file.content.buffer, file.content.byteOffset, file.content.byteLength);
      return filled === expected.length && expected.equals(current.subarray(0, filled)) ? undefined : "content";
    } finally {
      current.fill(0);
    }
  } finally {
    await handle.close();
  }
}
