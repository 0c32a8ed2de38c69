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
  await writeFile(join(dir, specName), `${JSON.stringify(marker)}\n`, { mode: 0o600 });
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
  return names.map((name) => {
    try {
      const m = JSON.parse(readFileSync(join(dir, name), "utf8")) as Marker;
      return { name, marker: typeof m.since === "number" && typeof m.storedAt === "number" ? m : undefined };
    } catch {
      return { name, marker: undefined };
    }
  });
}
