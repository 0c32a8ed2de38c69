import { join } from "node:path";
import { removeMarker } from "../cache/marker.js";
import { defaultCacheMarkerDir } from "../host-paths.js";
import type { Logger } from "../log.js";
import { loadSpec, specOutputNames } from "../spec.js";
import { assertSafeDirectory, removeDirectoryIfEmpty, removeFiles, staleTempFiles } from "../write.js";

/**
 * Remove what `fetch` wrote for a spec (and temp files a killed run left), then the directory
 * if empty, and the spec's cached-values marker. The sealed cache itself stays: it is what a
 * later start falls back on.
 */
export async function runCleanup(options: { specFile: string; outputDir?: string; markerDir?: string; log: Logger }): Promise<number> {
  const spec = await loadSpec(options.specFile);
  await removeMarker(options.markerDir ?? defaultCacheMarkerDir, spec.name).catch((e: unknown) =>
    options.log.warn(`${spec.name}: could not remove its cached-values marker: ${(e as Error).message}`),
  );
  const outputDir = options.outputDir ?? spec.outputDir;
  const { missing } = await assertSafeDirectory(outputDir);
  if (missing.length > 0) {
    options.log.info(`${spec.name}: nothing to clean up, ${outputDir} does not exist`);
    return 0;
  }
  const names = specOutputNames(spec);
  const removed = await removeFiles(
    [...names.map((n) => join(outputDir, n)), ...(await staleTempFiles(outputDir, new Set(names)))],
    options.log,
  );
  const dirRemoved = await removeDirectoryIfEmpty(outputDir);
  options.log.info(`${spec.name}: removed ${removed} file(s)${dirRemoved ? ` and ${outputDir}` : ""}`);
  return removed;
}
