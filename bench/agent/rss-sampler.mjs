// Inside the bench container: every 10 ms, sum VmRSS over every process in the cgroups of
// units whose names match the pattern (argv[2], a RegExp) below system.slice; on SIGTERM
// print the peak sum in KiB.
import { readdirSync, readFileSync } from "node:fs";

const pattern = new RegExp(process.argv[2] ?? "^$");
const base = "/sys/fs/cgroup/system.slice";
let peak = 0;
function sample() {
  let sum = 0;
  let units;
  try {
    units = readdirSync(base).filter((u) => pattern.test(u));
  } catch {
    return;
  }
  for (const unit of units) {
    let pids = [];
    try {
      pids = readFileSync(`${base}/${unit}/cgroup.procs`, "utf8").split("\n").filter(Boolean);
    } catch {
      continue;
    }
    for (const pid of pids) {
      try {
        const m = /^VmRSS:\s+(\d+) kB/m.exec(readFileSync(`/proc/${pid}/status`, "utf8"));
        if (m) sum += Number(m[1]);
      } catch {
        /* exited meanwhile */
      }
    }
  }
  if (sum > peak) peak = sum;
}
const timer = setInterval(sample, 10);
process.on("SIGTERM", () => {
  clearInterval(timer);
  process.stdout.write(`peak-kib ${peak}\n`);
  process.exit(0);
});
