/**
 * The markers of specs whose outputs came from the cache: `<dir>/<spec name>`, JSON
 * {since, storedAt, reason}, no values. Written when a fetch falls back to the cache, removed
 * by the next fresh success and by `cleanup`; `doctor` lists them.
 */
import { readdirSync, readFileSync } from "node:fs";
import { mkdir, rm, writeFile } from "node:fs/promises";
import { join } from "node:path";

/** What a marker says. */
export interface Marker {
  /** ms since the epoch: when the outputs were written from the cache. */
  readonly since: number;
  /** ms since the epoch: when those values were fetched fresh. */
  readonly storedAt: number;
  /** The failure the cache stood in for. */
  readonly reason: string;
}

/** Record that `specName` runs on cached values. */
export async function writeMarker(dir: string, specName: string, marker: Marker): Promise<void> {
  await mkdir(dir, { recursive: true, mode: 0o700 });
  const text = JSON.stringify({ since: marker.since, storedAt: marker.storedAt, reason: printable(marker.reason) });
  await writeFile(join(dir, specName), `${text}\n`, { mode: 0o600 });
}

/**
 * `text` with every control character (C0, DEL and C1) replaced by a space: the reason is a
 * backend's error message, and doctor prints it on a terminal.
 */
export function printable(text: string): string {
  // eslint-disable-next-line no-control-regex -- matching control characters is the point
  return text.replace(/[\u0000-\u001f\u007f-\u009f]/g, " ");
}

/** ms since the epoch that a Date can hold, so that doctor can print it. */
function isTime(value: unknown): value is number {
  return typeof value === "number" && Number.isFinite(value) && Math.abs(value) <= 8.64e15;
}

/** Forget it (fresh values again, or the service stopped); absent is fine. */
export async function removeMarker(dir: string, specName: string): Promise<void> {
  await rm(join(dir, specName), { force: true });
}

/** Every marker in `dir` (none when it does not exist); unreadable ones with what could be read. */
export function listMarkers(dir: string): { name: string; marker: Marker | undefined }[] {
  let names: string[];
  try {
    names = readdirSync(dir).sort();
  } catch {
    return [];
  }
  return names.map((file) => {
    const name = printable(file);
    try {
      const m = JSON.parse(readFileSync(join(dir, file), "utf8")) as Partial<Record<keyof Marker, unknown>> | null;
      if (m === null || !isTime(m.since) || !isTime(m.storedAt)) return { name, marker: undefined };
      return { name, marker: { since: m.since, storedAt: m.storedAt, reason: printable(typeof m.reason === "string" ? m.reason : "") } };
    } catch {
      return { name, marker: undefined };
    }
  });
}
