/**
 * The wrapper's run-time rule for the tree node runs from, for `doctor` (the C wrapper has
 * its own copy, check_tree(); change both together): node, the CLI, every ancestor of both
 * as written and as resolved, everything under the CLI's directory and under the package
 * root's node_modules, and the package root's package.json are owned by root and not
 * writable by group or others; a root-owned sticky ancestor (/tmp, /nix/store) passes;
 * symlinks inside the walked trees stay inside the package root.
 */
import { lstatSync, readdirSync, realpathSync, type Stats } from "node:fs";
import { dirname, join } from "node:path";

/** The first problem found, or undefined; `entries` counts what was checked. */
export interface TreeVerdict {
  readonly problem: string | undefined;
  readonly entries: number;
}

class Unsafe extends Error {}

function checkEntry(path: string, stats: Stats, ancestor: boolean): void {
  if (stats.uid !== 0) throw new Unsafe(`unsafe ${path}: owned by uid ${stats.uid}, not root`);
  if (stats.isSymbolicLink() || (stats.mode & 0o022) === 0) return;
  if (ancestor && stats.isDirectory() && (stats.mode & 0o1000) !== 0) return;
  throw new Unsafe(`unsafe ${path}: mode ${(stats.mode & 0o7777).toString(8).padStart(4, "0")}, writable by group or others`);
}

function lstatOrThrow(path: string): Stats {
  try {
    return lstatSync(path);
  } catch (error) {
    throw new Unsafe(`cannot check ${path}: ${(error as NodeJS.ErrnoException).code ?? "error"}`);
  }
}

function checkAncestors(path: string, counter: { n: number }): void {
  const parts = path.split("/").filter(Boolean);
  checkEntry("/", lstatOrThrow("/"), true);
  let current = "";
  parts.forEach((part, i) => {
    current += `/${part}`;
    counter.n++;
    checkEntry(current, lstatOrThrow(current), i < parts.length - 1);
  });
}

function checkBuiltIn(path: string, counter: { n: number }): string {
  checkAncestors(path, counter);
  let real: string;
  try {
    real = realpathSync(path);
  } catch (error) {
    throw new Unsafe(`cannot resolve ${path}: ${(error as NodeJS.ErrnoException).code ?? "error"}`);
  }
  checkAncestors(real, counter);
  if (!lstatSync(real).isFile()) throw new Unsafe(`${real} is not a regular file`);
  return real;
}

function walk(dir: string, root: string, counter: { n: number }, depth = 0): void {
  if (depth > 64) throw new Unsafe(`unsafe ${dir}: nested more than 64 levels`);
  for (const name of readdirSync(dir)) {
    const path = join(dir, name);
    const stats = lstatOrThrow(path);
    counter.n++;
    checkEntry(path, stats, false);
    if (stats.isDirectory()) walk(path, root, counter, depth + 1);
    if (stats.isSymbolicLink()) {
      let target = "";
      try {
        target = realpathSync(path);
      } catch {
        /* dangling: refused below */
      }
      if (!target.startsWith(`${root}/`)) throw new Unsafe(`unsafe ${path}: a symlink that does not stay inside ${root}`);
    }
  }
}

function verdict(check: (counter: { n: number }) => void): TreeVerdict {
  const counter = { n: 0 };
  try {
    check(counter);
    return { problem: undefined, entries: counter.n };
  } catch (error) {
    if (error instanceof Unsafe) return { problem: error.message, entries: counter.n };
    throw error;
  }
}

/** The node binary the wrapper execs. */
export function checkNodeBinary(node: string): TreeVerdict {
  return verdict((counter) => void checkBuiltIn(node, counter));
}

/** The CLI entry, its directory and the package it belongs to. */
export function checkCliTree(cli: string): TreeVerdict {
  return verdict((counter) => {
    const real = checkBuiltIn(cli, counter);
    const dir = dirname(real);
    let root = dir;
    for (;;) {
      const manifest = join(root, "package.json");
      let stats: Stats | undefined;
      try {
        stats = lstatSync(manifest);
      } catch {
        /* not here */
      }
      if (stats) {
        checkEntry(manifest, stats, false);
        break;
      }
      if (root === "/" || dirname(root) === root) {
        root = dir;
        break;
      }
      root = dirname(root);
      if (root === "/") {
        root = dir;
        break;
      }
    }
    checkEntry(dir, lstatOrThrow(dir), false);
    walk(dir, root, counter);
    const modules = join(root, "node_modules");
    let stats: Stats | undefined;
    try {
      stats = lstatSync(modules);
    } catch {
      /* none */
    }
    if (stats) {
      checkEntry(modules, stats, false);
      if (stats.isDirectory()) walk(modules, root, counter);
    }
  });
}
