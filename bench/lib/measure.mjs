// Process measurement: wall time (parent's monotonic clock, spawn → exit) and peak RSS of
// the measured program. Peak RSS comes from GNU time's %M (the kernel's maxrss for the
// child, exact); without GNU time it falls back to polling /proc/<pid>/status VmHWM.
import { spawn, spawnSync } from "node:child_process";
import { existsSync, readFileSync, rmSync } from "node:fs";
import { join } from "node:path";
import { performance } from "node:perf_hooks";

export const gnuTime = findGnuTime();

function findGnuTime() {
  for (const path of ["/usr/bin/time", "/bin/time"]) {
    if (!existsSync(path)) continue;
    // BSD and busybox time have no -f/-o; GNU time names itself in --version.
    const probe = spawnSync(path, ["--version"], { encoding: "utf8" });
    if (/GNU/i.test(`${probe.stdout ?? ""}${probe.stderr ?? ""}`)) return path;
  }
  return undefined;
}

export const rssMethod = gnuTime ? "GNU time %M (kernel maxrss of the process)" : "polling /proc/<pid>/status VmHWM every ~2 ms";

let counter = 0;

/** Children still running (the runner kills them if it is interrupted). */
export const liveChildren = new Set();

/**
 * Run one command to completion.
 * @param {string} cmd
 * @param {string[]} args
 * @param {{ env?: NodeJS.ProcessEnv, tmp: string, stdout?: "ignore" | "pipe", untilLine?: RegExp, killOnMark?: boolean, timeoutMs?: number, onSpawn?: (pid: number) => void }} options
 *   untilLine: also record the time at which a stderr line matching it arrived (`markMs`);
 *   killOnMark: then send the measured program SIGTERM (it has shown what we wanted).
 * @returns {Promise<{ wallMs: number, markMs: number | undefined, rssKiB: number | undefined, code: number | null, signal: string | null, stderr: string, pid: number | undefined }>}
 */
export function runOnce(cmd, args, options) {
  const outFile = join(options.tmp, `time-${process.pid}-${++counter}.txt`);
  const argv = gnuTime ? ["-f", "%M", "-o", outFile, cmd, ...args] : args;
  const program = gnuTime ?? cmd;
  return new Promise((resolve, reject) => {
    const started = performance.now();
    const child = spawn(program, argv, { env: options.env ?? process.env, stdio: ["ignore", options.stdout ?? "ignore", "pipe"] });
    liveChildren.add(child);
    if (child.pid !== undefined) options.onSpawn?.(child.pid);
    let stderr = "";
    let markMs;
    let pending = "";
    child.stderr.setEncoding("utf8");
    child.stderr.on("data", (chunk) => {
      const now = performance.now();
      stderr += chunk;
      if (options.untilLine && markMs === undefined) {
        pending += chunk;
        const lines = pending.split("\n");
        pending = lines.pop() ?? "";
        if (lines.some((line) => options.untilLine.test(line))) {
          markMs = now - started;
          if (options.killOnMark) {
            const target = measuredPid(child.pid);
            if (target !== undefined) process.kill(target, "SIGTERM");
          }
        }
      }
    });
    let hwm = 0;
    const poll = gnuTime ? undefined : setInterval(() => (hwm = Math.max(hwm, readStatusKiB(child.pid, "VmHWM") ?? 0)), 2);
    const timer = options.timeoutMs ? setTimeout(() => child.kill("SIGKILL"), options.timeoutMs) : undefined;
    let exited;
    child.on("error", reject);
    child.on("exit", (code, signal) => {
      exited = { wallMs: performance.now() - started, code, signal };
    });
    child.on("close", () => {
      liveChildren.delete(child);
      if (poll) clearInterval(poll);
      if (timer) clearTimeout(timer);
      let rssKiB;
      if (gnuTime) {
        try {
          // On a non-zero exit GNU time first writes "Command exited with non-zero status N".
          const lines = readFileSync(outFile, "utf8").trim().split("\n");
          rssKiB = Number.parseInt(lines[lines.length - 1] ?? "", 10);
          if (!Number.isFinite(rssKiB)) rssKiB = undefined;
        } catch {
          rssKiB = undefined;
        }
        rmSync(outFile, { force: true });
      } else {
        rssKiB = hwm || undefined;
      }
      resolve({ ...exited, markMs, rssKiB, stderr, pid: child.pid });
    });
  });
}

/** A field of /proc/<pid>/status in KiB, or undefined once the process is gone. */
export function readStatusKiB(pid, field) {
  try {
    const text = readFileSync(`/proc/${pid}/status`, "utf8");
    const match = new RegExp(`^${field}:\\s+(\\d+) kB`, "m").exec(text);
    return match ? Number(match[1]) : undefined;
  } catch {
    return undefined;
  }
}

/** The measured program's pid: GNU time's only child, or the process itself. */
export function measuredPid(pid) {
  if (!gnuTime) return pid;
  try {
    const children = readFileSync(`/proc/${pid}/task/${pid}/children`, "utf8").trim();
    return children ? Number(children.split(/\s+/)[0]) : undefined;
  } catch {
    return undefined;
  }
}

export function median(values) {
  const list = values.filter((v) => typeof v === "number" && Number.isFinite(v)).sort((a, b) => a - b);
  if (list.length === 0) return undefined;
  const mid = Math.floor(list.length / 2);
  return list.length % 2 ? list[mid] : (list[mid - 1] + list[mid]) / 2;
}

export function quantile(values, q) {
  const list = values.filter((v) => typeof v === "number" && Number.isFinite(v)).sort((a, b) => a - b);
  if (list.length === 0) return undefined;
  const pos = (list.length - 1) * q;
  const lo = Math.floor(pos);
  const hi = Math.ceil(pos);
  return list[lo] + (list[hi] - list[lo]) * (pos - lo);
}

/** median, quartiles and count of a list of samples */
export function summarize(values) {
  return { median: median(values), p25: quantile(values, 0.25), p75: quantile(values, 0.75), n: values.filter(Number.isFinite).length };
}
