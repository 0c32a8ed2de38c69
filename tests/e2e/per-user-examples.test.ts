// The per-user examples (examples/plain-linux/per-user) under a real systemd, installed as
// the files say: the wrapper where and how the Debian package puts it (/usr/bin, SUID+SGID to
// the service account, 6511), the example mapfile, the system service and its account, the
// cron job's tmpfiles rule and command line, and the user service in a lingering user's
// manager. The programs the examples start are probes that record who read which file.
import { readFileSync } from "node:fs";
import { basename, join } from "node:path";
import { afterAll, beforeAll, expect, it } from "vitest";
import { buildWrapper } from "../../helper/scripts/build-wrapper.mjs";
import { bootScenario, describeE2E, repoRoot, sha256, vaultPath, type Scenario } from "./scenario.js";
import { demoVault, type Vault } from "./vault.js";

const examples = join(repoRoot, "examples/plain-linux/per-user");
const example = (name: string) => readFileSync(join(examples, name), "utf8");
const wrapperPath = "/usr/bin/homelab-secrets-user";
const values = { restic: "restic pw 'q' $x", nightly: "nightly-api-token", sync: "alice-sync-token" };

function vault(): Vault {
  const base = demoVault();
  return {
    vaults: {
      ...base.vaults,
      Homelab: {
        items: {
          Restic: { fields: { password: values.restic } },
          Nightly: { fields: { "api-token": values.nightly } },
          Alice: { fields: { "sync-token": values.sync, "webapp-db-password": "w", "compose-db-password": "c" } },
        },
      },
    },
  };
}

// Stands in for the program an example starts: records who it runs as and what it was given.
const probe = `#!/bin/sh
f="$2"
{ id -un; stat -c '%U %a' "$f"; sha256sum < "$f" | cut -d' ' -f1; } > "/var/lib/probe/$(basename "$0")" 2>&1
`;

describeE2E("real systemd: the per-user examples (system service, cron, user service)", () => {
  let s: Scenario;
  const probeOf = async (name: string) => (await s.c.sh('cat "/var/lib/probe/$1"', [name], { allowFail: true })).stdout.trim().split("\n");

  beforeAll(async () => {
    s = await bootScenario("peruser", vault());
    const declared = s.golden.wrappers?.["homelab-secrets-user"];
    if (!declared) throw new Error("the golden units declare no homelab-secrets-user wrapper");
    const group = declared.group;
    await s.c.cx(["groupadd", "--system", "-f", group]);
    await s.c.cx(["useradd", "--system", "-g", group, "--no-create-home", "--shell", "/usr/sbin/nologin", declared.owner]);
    for (const [path, entry] of Object.entries(s.golden.etc ?? {})) {
      await s.c.cx(["chown", `${entry.user ?? "root"}:${entry.group ?? "root"}`, `/etc/${path}`]);
    }
    await s.c.sh('chown "$1:$2" /etc/homelab-secrets/token && chmod 0600 /etc/homelab-secrets/token', [declared.owner, group]);
    await s.c.sh('chown "root:$1" "$2" && chmod 0640 "$2"', [group, vaultPath]);
    await s.c.writeFile("/etc/homelab-secrets/mapfile", example("mapfile"), "0640", `root:${group}`);
    const built = buildWrapper({
      node: "/usr/local/bin/node",
      cli: "/opt/homelab-secrets/lib/helper/dist/cli.js",
      out: join(s.c.root, "wrapper-build"),
    });
    await s.c.sh('install -o "$2" -g "$3" -m 6511 "/$1" /usr/bin/homelab-secrets-user', [basename(built), declared.owner, group]);
    await s.c.sh("useradd --system --user-group --no-create-home --shell /usr/sbin/nologin restic");
    await s.c.sh("useradd --system --user-group --no-create-home --shell /usr/sbin/nologin nightly");
    await s.c.sh("useradd --create-home alice");
    await s.c.sh("install -d -m 1777 /var/lib/probe");
    for (const name of ["restic-backup", "nightly-sync", "sync"]) await s.c.writeFile(`/usr/local/bin/${name}`, probe, "0755");
  }, 180_000);
  afterAll(async () => {
    await s?.c.teardown();
  }, 60_000);

  it("the wrapper sits where the package installs it, as the package sets it", async () => {
    const st = await s.c.cx(["stat", "-c", "%U:%G %a", wrapperPath]);
    expect(st.stdout.trim()).toBe("homelab-secrets:homelab-secrets 6511");
  });

  it("doctor without --wrapper finds it there, and the CLI it names runs as the service account", async () => {
    const r = await s.c.cx(["/opt/homelab-secrets/bin/homelab-secrets", "doctor"], { allowFail: true });
    expect(r.code, r.stdout + r.stderr).toBe(0);
    expect(r.stdout).toMatch(/^ok {6}wrapper: \/usr\/bin\/homelab-secrets-user \(owner /m);
    expect(r.stdout).toMatch(/^ok {6}cli as service account: .* runs as homelab-secrets$/m);
    expect(r.stdout).not.toMatch(/^(UNSAFE|WARN)/m);
  });

  it("restic.service as shipped: systemd-analyze verify accepts it; the service's account reads its 0600 file; the stop removes it", async () => {
    await s.c.writeFile("/etc/systemd/system/restic.service", example("restic.service"));
    await s.c.cx(["systemctl", "daemon-reload"]);
    const verify = await s.c.cx(["systemd-analyze", "verify", "/etc/systemd/system/restic.service"], { allowFail: true });
    expect(verify.code, verify.stderr).toBe(0);
    const start = await s.c.cx(["systemctl", "start", "restic.service"], { allowFail: true, timeoutMs: 60_000 });
    expect(start.code, start.stderr + (await s.c.sh("journalctl -b0 -u restic.service --no-pager | tail -20")).stdout).toBe(0);
    expect(await probeOf("restic-backup")).toEqual(["restic", "restic 600", sha256(values.restic)]);
    await s.c.syncJournal();
    const messages = (await s.c.journal(["restic.service"])).map((e) => e.message).join("\n");
    expect(messages).toMatch(/restic: wrote 1 file\(s\)/);
    expect(messages).toMatch(/restic: removed 1 of 1 file\(s\)/);
    expect((await s.c.cx(["test", "-e", "/run/restic/password"], { allowFail: true })).code).not.toBe(0);
  });

  it("restic.service with NoNewPrivileges=yes fails, and its journal says why in one line (78)", async () => {
    await s.c.cx(["mkdir", "-p", "/etc/systemd/system/restic.service.d"]);
    await s.c.writeFile("/etc/systemd/system/restic.service.d/nnp.conf", "[Service]\nNoNewPrivileges=yes\n");
    await s.c.sh("rm -f /var/lib/probe/restic-backup && systemctl daemon-reload");
    try {
      const since = (await s.c.sh("date '+%Y-%m-%d %H:%M:%S'")).stdout.trim();
      const start = await s.c.cx(["systemctl", "start", "restic.service"], { allowFail: true, timeoutMs: 60_000 });
      expect(start.code).not.toBe(0);
      expect((await s.c.show("restic.service", ["ExecMainStatus", "Result"]))["Result"]).toBe("exit-code");
      await s.c.syncJournal();
      const messages = (await s.c.journal(["restic.service"], since)).map((e) => e.message);
      // The fetch (ExecStartPre=) and the cleanup (ExecStopPost=) each say it, in one line.
      const lines = messages.filter((m) => m.startsWith("homelab-secrets-user:"));
      expect(lines, messages.join("\n")).toHaveLength(2);
      for (const line of lines) expect(line).toMatch(/^homelab-secrets-user: no_new_privs is set \(NoNewPrivileges=yes/);
      expect(messages.join("\n")).toMatch(/status=78/);
      expect((await s.c.cx(["test", "-e", "/var/lib/probe/restic-backup"], { allowFail: true })).code).not.toBe(0);
    } finally {
      await s.c.sh("rm -rf /etc/systemd/system/restic.service.d && systemctl daemon-reload");
    }
  });

  it("nightly-sync.tmpfiles makes nightly's 0700 directory; the cron line's command, run as its user, fetches, runs and cleans up", async () => {
    await s.c.writeFile("/etc/tmpfiles.d/nightly-sync.conf", example("nightly-sync.tmpfiles"));
    await s.c.cx(["systemd-tmpfiles", "--create", "/etc/tmpfiles.d/nightly-sync.conf"]);
    expect((await s.c.cx(["stat", "-c", "%U:%G %a", "/run/nightly-sync"])).stdout.trim()).toBe("nightly:nightly 700");

    // /etc/cron.d format: variable lines, then minute hour day month weekday user command.
    const lines = example("nightly-sync.cron")
      .split("\n")
      .filter((l) => l.trim() !== "" && !l.startsWith("#"));
    const variables = lines.filter((l) => /^[A-Z_]+=/.test(l));
    const jobs = lines.filter((l) => !/^[A-Z_]+=/.test(l));
    expect(jobs).toHaveLength(1);
    const fields = jobs[0]!.split(/\s+/);
    expect(fields.slice(0, 5).every((f) => /^[\d*/,-]+$/.test(f))).toBe(true);
    expect(fields[5]).toBe("nightly");
    const command = fields.slice(6).join(" ");
    // cron runs the command with /bin/sh as that user, with the file's variables (no cron daemon in this rootfs).
    const r = await s.c.cx(["runuser", "-u", "nightly", "--", "/usr/bin/env", "-i", ...variables, "/bin/sh", "-c", command], {
      allowFail: true,
    });
    expect(r.code, r.stderr).toBe(0);
    expect(await probeOf("nightly-sync")).toEqual(["nightly", "nightly 600", sha256(values.nightly)]);
    expect(r.stderr).toMatch(/nightly: wrote 1 file\(s\)/);
    expect(r.stderr).toMatch(/nightly: removed 1 of 1 file\(s\)/);
    expect((await s.c.sh("ls -A /run/nightly-sync")).stdout).toBe("");
  });

  it("sync.service in a user's manager (user@UID.service, as lingering starts it): --serialize fetch into %t/secrets, the probe reads it, the stop removes it", async () => {
    await s.c.writeFile("/etc/systemd/user/sync.service", example("sync.service"));
    const uid = await s.uid("alice");
    // This rootfs has no libpam-systemd, whose pam_systemd.so gives a user manager its
    // XDG_RUNTIME_DIR; set just that variable the way it would (the manager itself is real).
    await s.c.cx(["mkdir", "-p", "/etc/systemd/system/user@.service.d"]);
    await s.c.writeFile(
      "/etc/systemd/system/user@.service.d/e2e-runtime-dir.conf",
      "[Service]\nEnvironment=XDG_RUNTIME_DIR=/run/user/%i\n",
    );
    await s.c.cx(["systemctl", "daemon-reload"]);
    // What lingering makes logind do at boot (trixie's rootfs has no D-Bus for loginctl to ask it).
    await s.c.cx(["systemctl", "start", `user@${uid}.service`], { timeoutMs: 60_000 });
    const manager = await s.c.waitForState(`user@${uid}.service`, "active", 30_000);
    const why =
      manager === "active"
        ? ""
        : (await s.c.sh('journalctl -b0 --no-pager -u "user@$1.service" -u "user-runtime-dir@$1.service" | tail -30', [String(uid)]))
            .stdout;
    expect(manager, why).toBe("active");
    // No user D-Bus in this rootfs: systemctl --user talks to the manager's private socket.
    const start = await s.c.cx(
      ["runuser", "-u", "alice", "--", "env", `XDG_RUNTIME_DIR=/run/user/${uid}`, "systemctl", "--user", "start", "sync.service"],
      { allowFail: true, timeoutMs: 60_000 },
    );
    expect(start.code, start.stderr).toBe(0);
    let seen: string[] = [];
    for (let i = 0; i < 100 && seen.length < 3; i++) {
      seen = (await probeOf("sync")).filter(Boolean);
      if (seen.length < 3) await new Promise((resolve) => setTimeout(resolve, 100));
    }
    expect(seen).toEqual(["alice", "alice 600", sha256(values.sync)]);
    // The probe exits at once, so the unit stops and ExecStopPost= removes the file.
    let left = "present";
    for (let i = 0; i < 100 && left !== ""; i++) {
      left = (await s.c.sh('ls -A "/run/user/$1/secrets/sync" 2>/dev/null', [String(uid)], { allowFail: true })).stdout.trim();
      if (left !== "") await new Promise((resolve) => setTimeout(resolve, 100));
    }
    expect(left).toBe("");
  });
});
