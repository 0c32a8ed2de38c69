import { constants } from "node:fs";
import { lstat, link, mkdir, open, readdir, readlink, rename, rmdir, unlink, chown, chmod } from "node:fs/promises";
import type { Stats } from "node:fs";
import { basename, dirname, isAbsolute, join, posix } from "node:path";
import { cantCreateError, configError, isHomelabError } from "./errors.js";
import type { Logger } from "./log.js";

export interface Owner {
  readonly uid: number;
  readonly gid: number;
}

export interface FileToWrite {
  readonly path: string;
  readonly content: Uint8Array;
  readonly mode: number;
  readonly owner?: Owner | undefined;
}

export interface DirectorySettings {
  readonly mode: number;
  readonly owner?: Owner | undefined;
  /** Leave an existing directory's owner and mode alone (systemd's RuntimeDirectory= made it). */
  readonly keepExisting?: boolean;
  /**
   * When an existing directory's owner or mode may be changed to these settings. Without
   * it, only directories this run creates are changed.
   */
  readonly adopt?: AdoptRule;
}

/**
 * A directory this run did not create may be re-owned or re-moded only when it is plainly
 * the caller's: one of `runtimeDirectories` (systemd's $RUNTIME_DIRECTORY), or non-empty and
 * holding nothing but `outputNames` and their temp files (what an earlier run left). Anything
 * else (an outputDir of "/etc" by mistake) is refused rather than handed to the service.
 */
export interface AdoptRule {
  readonly runtimeDirectories: readonly string[];
  readonly outputNames: ReadonlySet<string>;
}

export interface WriteOptions {
  /** Create missing parent directories (and fix the owner/mode of the immediate parent) with these settings. */
  readonly createDirs?: DirectorySettings;
  readonly log: Logger;
}

const tempSuffix = ".hs-tmp";
const tempPattern = /^\.(.+)\.[0-9a-f]{16}\.hs-tmp$/;

/**
 * Write every file or none: each goes to a fresh temp file beside its target
 * (O_CREAT|O_EXCL|O_NOFOLLOW, owner and mode set before any content, fsync), and only when
 * all temp files are complete are they renamed over their targets. rename(2) replaces a
 * symlink planted at a target instead of following it.
 */
export async function writeFilesAtomically(files: readonly FileToWrite[], options: WriteOptions): Promise<void> {
  const { log } = options;
  const seen = new Set<string>();
  for (const file of files) {
    if (!isAbsolute(file.path)) throw configError(`output path "${file.path}" is not absolute`);
    if (file.path.split("/").includes("..")) throw configError(`output path "${file.path}" contains ".."`);
    const normal = posix.normalize(file.path);
    if (seen.has(normal)) throw configError(`output path "${file.path}" is written twice`);
    seen.add(normal);
  }

  const directories = [...new Set(files.map((f) => dirname(posix.normalize(f.path))))];
  for (const directory of directories) await prepareDirectory(directory, options.createDirs, log);
  for (const file of files) await refuseDirectoryTarget(file.path);

  const written: { temp: string; target: string }[] = [];
  let current = "";
  try {
    for (const file of files) {
      current = posix.normalize(file.path);
      written.push({ temp: await writeTemp(current, file), target: current });
    }
  } catch (error) {
    await Promise.all(written.map(({ temp }) => unlink(temp).catch(() => undefined)));
    throw asWriteError(error, current);
  }

  await replaceAll(written, log);
  for (const directory of directories) await fsyncDirectory(directory);
}

interface Replacement {
  readonly temp: string;
  readonly target: string;
  /** A hard link to the target's old file; undefined when there was none (or none could be made). */
  backup?: string | undefined;
  existed?: boolean;
}

/**
 * The rename phase, all or nothing: every target that cannot be replaced is found before
 * the first rename where the kernel lets us tell (a sticky directory, an immutable file),
 * and each existing target keeps its old file under a hard link, so that a rename failing
 * later puts the earlier targets back (old inode, old content). Targets no link could be
 * made for are renamed last.
 */
async function replaceAll(written: readonly { temp: string; target: string }[], log: Logger): Promise<void> {
  const plan: Replacement[] = written.map((w) => ({ ...w }));
  const dropTemps = (items: readonly Replacement[]) => Promise.all(items.map(({ temp }) => unlink(temp).catch(() => undefined)));
  const dropBackups = (items: readonly Replacement[]) =>
    Promise.all(items.map(({ backup }) => (backup ? unlink(backup).catch(() => undefined) : Promise.resolve(undefined))));
  let current = "";
  try {
    for (const item of plan) {
      current = item.target;
      await assertReplaceable(item.target);
      const backup = await backupTarget(item);
      item.existed = backup !== null;
      item.backup = backup ?? undefined;
    }
  } catch (error) {
    await Promise.all([dropTemps(plan), dropBackups(plan)]);
    throw asWriteError(error, current, "replace");
  }
  const order = [...plan.filter((p) => !p.existed || p.backup), ...plan.filter((p) => p.existed && !p.backup)];
  for (const [index, item] of order.entries()) {
    try {
      await rename(item.temp, item.target);
    } catch (error) {
      await dropTemps(order.slice(index));
      const lost = await rollBack(order.slice(0, index));
      await dropBackups(order);
      const failure = asWriteError(error, item.target, "replace");
      const undo =
        index === 0
          ? ""
          : lost.length === 0
            ? `; the ${index} file(s) already replaced were put back`
            : `; could not put back ${lost.join(", ")}`;
      throw cantCreateError(`${failure.message}${undo}`, error);
    }
    log.debug(`wrote ${item.target}`);
  }
  await dropBackups(order);
}

/** Undo renames: old files back from their links, new targets removed. Returns what could not be undone. */
async function rollBack(done: readonly Replacement[]): Promise<string[]> {
  const lost: string[] = [];
  for (const item of done) {
    try {
      if (item.backup) await rename(item.backup, item.target);
      else if (!item.existed) await unlink(item.target);
      else lost.push(item.target);
    } catch {
      lost.push(item.target);
    }
  }
  return lost;
}

/**
 * Refuse before any rename what rename(2) would refuse for an ordinary user: in a sticky
 * directory only the owner of an entry (or of the directory) may replace it.
 */
async function assertReplaceable(target: string): Promise<void> {
  const euid = process.geteuid?.() ?? 0;
  if (euid === 0) return;
  const stats = await lstatOrUndefined(target);
  if (!stats || stats.uid === euid) return;
  const directory = await lstat(dirname(target));
  if ((directory.mode & 0o1000) !== 0 && directory.uid !== euid) {
    throw cantCreateError(
      `cannot replace ${target}: it belongs to uid ${stats.uid} and ${dirname(target)} is sticky, so only its owner may replace it`,
    );
  }
}

/**
 * Hard-link the target's old file beside it (the temp-file pattern, so a killed run's link
 * is removed as a stale temp file). null: no target. undefined: a target we cannot link,
 * where a rename may still work (a filesystem without hard links; an ordinary user's
 * protected_hardlinks). For root, whom protected_hardlinks does not stop, EPERM on a
 * filesystem that has hard links means an immutable or append-only file: refused here.
 */
async function backupTarget(item: Replacement): Promise<string | null | undefined> {
  const { target, temp } = item;
  if (!(await lstatOrUndefined(target))) return null;
  for (let attempt = 0; ; attempt++) {
    const backup = join(dirname(target), `.${basename(target)}.${tempToken()}${tempSuffix}`);
    try {
      await link(target, backup);
      return backup;
    } catch (error) {
      const code = (error as NodeJS.ErrnoException).code;
      if (code === "EEXIST" && attempt < 16) continue;
      if (code !== "EPERM" && code !== "EACCES") throw error;
      if (!(await canHardLink(temp))) return undefined;
      if ((process.geteuid?.() ?? 0) !== 0) return undefined;
      throw error;
    }
  }
}

async function canHardLink(ours: string): Promise<boolean> {
  const probe = join(dirname(ours), `.${basename(ours)}.${tempToken()}${tempSuffix}`);
  try {
    await link(ours, probe);
  } catch {
    return false;
  }
  await unlink(probe).catch(() => undefined);
  return true;
}

/**
 * Create the temp file beside `target`. Names need not be unpredictable: O_EXCL|O_NOFOLLOW
 * make a planted name fail instead of being followed, and we then pick another (node:crypto
 * is left out on purpose: loading it costs more than the whole write at boot).
 */
async function writeTemp(target: string, file: FileToWrite): Promise<string> {
  const flags = constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | constants.O_NOFOLLOW;
  for (let attempt = 0; ; attempt++) {
    const temp = join(dirname(target), `.${basename(target)}.${tempToken()}${tempSuffix}`);
    let handle: Awaited<ReturnType<typeof open>>;
    try {
      handle = await open(temp, flags, 0o600);
    } catch (error) {
      const code = (error as NodeJS.ErrnoException).code;
      if ((code === "EEXIST" || code === "ELOOP") && attempt < 16) continue;
      throw error;
    }
    try {
      if (file.owner) await handle.chown(file.owner.uid, file.owner.gid);
      await handle.chmod(file.mode);
      let offset = 0;
      while (offset < file.content.length) {
        const { bytesWritten } = await handle.write(file.content, offset, file.content.length - offset);
        offset += bytesWritten;
      }
      await handle.sync();
    } catch (error) {
      await handle.close().catch(() => undefined);
      await unlink(temp).catch(() => undefined);
      throw error;
    }
    await handle.close();
    return temp;
  }
}

let tempCounter = 0;
const tempToken = () =>
  ((process.pid * 65536 + (tempCounter++ % 65536)) % 2 ** 32).toString(16).padStart(8, "0") +
  Math.floor(Math.random() * 2 ** 32)
    .toString(16)
    .padStart(8, "0");

async function refuseDirectoryTarget(path: string): Promise<void> {
  const stats = await lstatOrUndefined(path);
  if (stats?.isDirectory()) throw cantCreateError(`cannot write ${path}: a directory is in the way`);
}

async function fsyncDirectory(path: string): Promise<void> {
  const handle = await open(path, constants.O_RDONLY | constants.O_DIRECTORY);
  try {
    await handle.sync();
  } catch {
    // Some filesystems refuse fsync on directories; the renames are still atomic.
  } finally {
    await handle.close();
  }
}

/**
 * Make sure `directory` exists as a real directory whose ancestors cannot be swapped by
 * anyone but root or us. Missing directories are created with `settings`.
 */
export async function prepareDirectory(directory: string, settings: DirectorySettings | undefined, log: Logger): Promise<void> {
  const { missing, sharedParent } = await assertSafeDirectory(directory);
  if (missing.length > 0 && !settings) {
    throw cantCreateError(`cannot write into ${directory}: it does not exist`);
  }
  // Handing the directory to another user inside a directory others can write to (a sticky
  // one such as /tmp) would let that user swap it for a symlink between our checks and the
  // chown, chmod and writes that use its path. (With more than one missing component, the
  // last one's parent is a directory we create.)
  const euid = process.geteuid?.() ?? 0;
  const handsOver = settings?.owner !== undefined && settings.owner.uid !== 0 && settings.owner.uid !== euid;
  if (handsOver && sharedParent && missing.length <= 1 && (missing.length > 0 || !settings?.keepExisting)) {
    throw cantCreateError(
      `refusing to hand ${directory} to uid ${settings.owner.uid}: ${dirname(directory)} is writable by others, so its new owner could swap it for a link`,
    );
  }
  // Intermediate directories stay traversable; the last one gets `settings` below.
  await createMissingDirectories(directory, missing, { mode: 0o700, intermediateMode: 0o755 }, asWriteError, log);
  // mkdir tolerates EEXIST: whatever is there now (a race may have planted it) must be safe.
  if (missing.length > 0 && (await assertSafeDirectory(directory)).missing.length > 0) {
    throw cantCreateError(`cannot write into ${directory}: it disappeared while being created`);
  }
  const stats = await lstat(directory);
  if (!stats.isDirectory()) throw cantCreateError(`cannot write into ${directory}: not a directory`);
  if (settings && (missing.length > 0 || !settings.keepExisting)) {
    const changes =
      (settings.owner !== undefined && (stats.uid !== settings.owner.uid || stats.gid !== settings.owner.gid)) ||
      (stats.mode & 0o7777) !== settings.mode;
    if (changes && missing.length === 0 && !(await mayAdopt(directory, settings.adopt))) {
      throw configError(
        `refusing to change the owner or mode of ${directory}: this run did not create it, it is not the unit's RuntimeDirectory= ($RUNTIME_DIRECTORY) and it holds files that are not this spec's outputs; point outputDir at a directory of its own (or remove it so fetch creates it)`,
      );
    }
    try {
      if (settings.owner && (stats.uid !== settings.owner.uid || stats.gid !== settings.owner.gid)) {
        await chown(directory, settings.owner.uid, settings.owner.gid);
      }
      if ((stats.mode & 0o7777) !== settings.mode) await chmod(directory, settings.mode);
    } catch (error) {
      throw asWriteError(error, directory);
    }
  }
}

/**
 * Create the `missing` trailing components of `directory` (as assertSafeDirectory reported
 * them), one by one. EEXIST is no error: the caller checks again what is there now.
 */
export async function createMissingDirectories(
  directory: string,
  missing: readonly string[],
  modes: { readonly mode: number; readonly intermediateMode: number },
  failure: (error: unknown, path: string) => Error,
  log?: Logger,
): Promise<void> {
  let current = directory;
  for (let i = missing.length; i > 0; i--) current = dirname(current);
  for (const [index, part] of missing.entries()) {
    current = join(current, part);
    try {
      await mkdir(current, { mode: index === missing.length - 1 ? modes.mode : modes.intermediateMode });
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== "EEXIST") throw failure(error, current);
    }
    log?.debug(`created directory ${current}`);
  }
}

async function mayAdopt(directory: string, rule: AdoptRule | undefined): Promise<boolean> {
  if (!rule) return false;
  if (rule.runtimeDirectories.some((d) => isAbsolute(d) && posix.normalize(d) === directory)) return true;
  let entries: string[];
  try {
    entries = await readdir(directory);
  } catch {
    return false;
  }
  return (
    entries.length > 0 &&
    entries.every((entry) => rule.outputNames.has(entry) || rule.outputNames.has(tempPattern.exec(entry)?.[1] ?? "\0"))
  );
}

export interface SafeDirectory {
  /** Path components below the deepest existing directory that do not exist yet. */
  readonly missing: string[];
  /**
   * The directory holding the last existing component (the parent of `path`, or the deepest
   * existing directory when some are missing) may be written by others: it is sticky and
   * group or world writable, like /tmp.
   */
  readonly sharedParent: boolean;
}

/**
 * Walk `path` from the root. Every existing ancestor must be a directory owned by root or
 * by us and not writable by others (sticky directories such as /tmp excepted); symlinks
 * are followed only when root owns them. The last component may belong to another owner
 * (the service the files are for): we never follow links inside it. Not inside a directory
 * others can write to, though: sticky or not, the owner of an entry there can rename it, and
 * so swap the directory we then use by path for a link to anywhere.
 */
export async function assertSafeDirectory(path: string): Promise<SafeDirectory> {
  if (!isAbsolute(path)) throw configError(`directory "${path}" is not absolute`);
  const euid = process.geteuid?.() ?? 0;
  const queue = path.split("/").filter((p) => p.length > 0 && p !== ".");
  if (queue.includes("..")) throw configError(`directory "${path}" contains ".."`);
  let current = "/";
  // For each directory below "/" on `current`: may others write to it (sticky, else
  // assertTrustedAncestor refused it)?
  const shared: boolean[] = [];
  let parentShared = false;
  let hops = 0;
  while (queue.length > 0) {
    const part = queue.shift()!;
    const up = part === "..";
    const next = up ? dirname(current) : join(current, part);
    parentShared = (up ? shared.at(-3) : shared.at(-1)) ?? false;
    const stats = await lstatOrUndefined(next);
    if (!stats) return { missing: [part, ...queue], sharedParent: parentShared };
    if (stats.isSymbolicLink()) {
      if (stats.uid !== 0) throw cantCreateError(`refusing to follow ${next}: a symlink not owned by root`);
      if (++hops > 32) throw cantCreateError(`too many symlinks under ${path}`);
      const target = await readlink(next);
      queue.unshift(...target.split("/").filter((p) => p.length > 0 && p !== "."));
      if (isAbsolute(target)) {
        current = "/";
        shared.length = 0;
      }
      continue;
    }
    if (!stats.isDirectory()) throw cantCreateError(`cannot write into ${path}: ${next} is not a directory`);
    const isLast = queue.length === 0;
    if (!isLast) assertTrustedAncestor(next, stats, euid);
    else if (parentShared && stats.uid !== 0 && stats.uid !== euid) {
      throw cantCreateError(
        `refusing to write into ${next}: owned by uid ${stats.uid} inside ${dirname(next)}, which others can write to (it could be swapped for a link)`,
      );
    }
    if (up) shared.pop();
    else shared.push((stats.mode & 0o022) !== 0);
    current = next;
  }
  return { missing: [], sharedParent: parentShared };
}

function assertTrustedAncestor(path: string, stats: Stats, euid: number): void {
  if (stats.uid !== 0 && stats.uid !== euid) {
    throw cantCreateError(`refusing to write below ${path}: owned by uid ${stats.uid}, not root or us`);
  }
  const sticky = (stats.mode & 0o1000) !== 0;
  if ((stats.mode & 0o022) !== 0 && !sticky) {
    throw cantCreateError(`refusing to write below ${path}: writable by group or others`);
  }
}

async function lstatOrUndefined(path: string): Promise<Stats | undefined> {
  try {
    return await lstat(path);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === "ENOENT") return undefined;
    throw asWriteError(error, path);
  }
}

/** Remove files we wrote (missing ones are fine); returns how many were removed. */
export async function removeFiles(paths: readonly string[], log: Logger): Promise<number> {
  let removed = 0;
  for (const path of paths) {
    try {
      await unlink(path);
      removed++;
      log.debug(`removed ${path}`);
    } catch (error) {
      const code = (error as NodeJS.ErrnoException).code;
      if (code !== "ENOENT") throw asWriteError(error, path);
    }
  }
  return removed;
}

/** Temp files a killed run may have left for the given output names. */
export async function staleTempFiles(directory: string, names: ReadonlySet<string>): Promise<string[]> {
  let entries: string[];
  try {
    entries = await readdir(directory);
  } catch {
    return [];
  }
  return entries
    .filter((entry) => {
      const match = tempPattern.exec(entry);
      return match !== null && names.has(match[1]!);
    })
    .map((entry) => join(directory, entry));
}

/** Remove a directory if it is empty; keep it otherwise. */
export async function removeDirectoryIfEmpty(directory: string): Promise<boolean> {
  try {
    await rmdir(directory);
    return true;
  } catch {
    return false;
  }
}

function asWriteError(error: unknown, path: string, verb: "write" | "replace" = "write"): Error {
  if (isHomelabError(error)) return error;
  const code = (error as NodeJS.ErrnoException).code ?? "unknown error";
  const reason =
    code === "ENOSPC"
      ? "no space left on device"
      : code === "EACCES" || code === "EPERM"
        ? "permission denied"
        : code === "ELOOP"
          ? "a symlink is in the way"
          : code;
  const detail =
    verb === "replace" && (code === "EPERM" || code === "EACCES") ? "; is it immutable, or another user's file in a sticky directory?" : "";
  return cantCreateError(`cannot ${verb} ${path}: ${reason} (${code})${detail}`, error);
}
