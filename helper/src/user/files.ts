/**
 * Writing and removing a user's files as that user: paths checked again, missing
 * directories created 0700, all or nothing.
 */
import { dirname } from "node:path";
import { cantCreateError } from "../errors.js";
import type { Logger } from "../log.js";
import { checkWriterPath } from "../mapfile.js";
import { assertSafeDirectory, createMissingDirectories, removeFiles, writeFilesAtomically } from "../write.js";

/** The mode of every file user mode writes. */
export const fileMode = 0o600;
/** The mode of every directory user mode creates. */
export const dirMode = 0o700;

/**
 * Write every file as the current user, or none: paths are checked again, missing
 * directories are created 0700, symlinks in the path are refused (a root-owned one
 * excepted, see assertSafeDirectory), a symlink at the file itself is replaced, not followed.
 */
export async function writeUserFiles(files: readonly { path: string; value: Uint8Array }[], uid: number, log: Logger): Promise<void> {
  for (const file of files) {
    const problem = checkWriterPath(file.path, uid);
    if (problem) throw cantCreateError(`refusing to write: ${problem}`);
  }
  for (const directory of new Set(files.map((f) => dirname(f.path)))) await createUserDirectories(directory, uid);
  await writeFilesAtomically(
    files.map((f) => ({ path: f.path, content: f.value, mode: fileMode })),
    { log },
  );
}

/** Remove the caller's mapped files that exist; returns how many were removed. */
export async function removeUserFiles(paths: readonly string[], uid: number, log: Logger): Promise<number> {
  for (const path of paths) {
    const problem = checkWriterPath(path, uid);
    if (problem) throw cantCreateError(`refusing to remove: ${problem}`);
  }
  const present: string[] = [];
  for (const path of paths) {
    // Never walk through a symlinked directory to unlink something elsewhere.
    const { missing } = await assertSafeDirectory(dirname(path));
    if (missing.length === 0) present.push(path);
  }
  return removeFiles(present, log);
}

async function createUserDirectories(directory: string, uid: number): Promise<void> {
  const { missing } = await assertSafeDirectory(directory);
  await createMissingDirectories(directory, missing, { mode: dirMode, intermediateMode: dirMode }, (error, path) => {
    const code = (error as NodeJS.ErrnoException).code;
    const hint =
      path === `/run/user/${uid}`
        ? " (only systemd-logind creates it, for a login session or loginctl enable-linger; or give absolute paths in the mapfile)"
        : "";
    return cantCreateError(`cannot create directory ${path}: ${code ?? "error"}${hint}`, error);
  });
  // Created or not, what is there now must be safe (a race could have planted a link).
  await assertSafeDirectory(directory);
}
