// Inside the bench container: every 10 ms, read VmRSS of every process in the cgroups of
// units whose names match the pattern (argv[2], a RegExp) below system.slice, sorted into
// classes; on SIGTERM print one JSON line: per class the peak of its sum and the largest single
// process (KiB), and the peak of the sum over all.
//   agent    the credential agent's own processes (front end and Node)
//   fetch    `homelab-secrets fetch` in the -secrets oneshots
//   systemd  systemd's own forks before they exec ("(sd-mkdcreds)", "(sleep)", the executor)
//   consumer what the services run (the guard, sleep)
import { readdirSync, readFileSync } from "node:fs";

const pattern = new RegExp(process.argv[2] ?? "^$");
const base = "/sys/fs/cgroup/system.slice";
const classes = ["agent", "fetch", "systemd", "consumer"];
const peak = Object.fromEntries(classes.map((c) => [c, { sumKiB: 0, oneKiB: 0 }]));
let peakTotal = 0;

function classOf(unit, comm) {
  if (comm.startsWith("(") || comm === "systemd-executor") return "systemd";
  if (unit === "homelab-secrets-agent.service") return "agent";
  if (unit.endsWith("-secrets.service")) return "fetch";
  return "consumer";
}

function sample() {
  const sum = Object.fromEntries(classes.map((c) => [c, 0]));
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
        const status = readFileSync(`/proc/${pid}/status`, "utf8");
        const rss = Number(/^VmRSS:\s+(\d+) kB/m.exec(status)?.[1] ?? 0);
        const c = classOf(unit, /^Name:\s+(.*)$/m.exec(status)?.[1] ?? "");
        sum[c] += rss;
        if (rss > peak[c].oneKiB) peak[c].oneKiB = rss;
      } catch {
        /* exited meanwhile */
      }
    }
  }
  let total = 0;
  for (const c of classes) {
    total += sum[c];
    if (sum[c] > peak[c].sumKiB) peak[c].sumKiB = sum[c];
  }
  if (total > peakTotal) peakTotal = total;
}
const timer = setInterval(sample, 10);
process.on("SIGTERM", () => {
  clearInterval(timer);
  process.stdout.write(`${JSON.stringify({ totalKiB: peakTotal, classes: peak })}\n`);
  process.exit(0);
});
