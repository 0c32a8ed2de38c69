/**
 * The permission rules for the files the helper trusts, in one place: the token reader, the
 * user-mode reader and `doctor` check the same bits.
 */

/** The stat fields the rules look at. */
export interface ModeAndOwner {
  readonly mode: number;
  readonly uid: number;
}

/** A token must not be readable or writable by group or others. */
export function accessibleToOthers(stats: Pick<ModeAndOwner, "mode">): boolean {
  return (stats.mode & 0o077) !== 0;
}

/** Group or others may write it: whoever can, can change what the helper trusts. */
export function writableByOthers(stats: Pick<ModeAndOwner, "mode">): boolean {
  return (stats.mode & 0o022) !== 0;
}

/** root may use only a file that root owns and group and others cannot write (op-secret-manager's rule). */
export function rootControlled(stats: ModeAndOwner): boolean {
  return stats.uid === 0 && !writableByOthers(stats);
}

/** The permission bits as three octal digits, e.g. "640". */
export function modeDigits(mode: number): string {
  return (mode & 0o777).toString(8).padStart(3, "0");
}
