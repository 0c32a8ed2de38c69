// The Debian package under a real systemd, the way an admin uses it: `dpkg -i`, a service
// wired to homelab-secrets@<service>.service by the shipped example drop-in, two users
// through the installed SUID wrapper, an upgrade over the previous build, `dpkg -r`,
// `dpkg --purge`. nodejs (>= 20) is a real package in the container's dpkg database: the
// distribution's own when it has one that new (trixie), else this host's installed nodejs
// package repacked (bookworm: Debian ships 18; the host runs NodeSource's 20).
import { randomBytes } from "node:crypto";
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, expect, it } from "vitest";
import { packageDeb } from "../../helper/scripts/package-deb.mjs";
import { startFakeConnect } from "../connect/fake-connect.mjs";
import { run } from "./container.js";
import { bootScenario, describeE2E, probeFiles, sha256, waitForProbe, type Scenario } from "./scenario.js";
import type { Vault } from "./vault.js";

const cacheDir = process.env["HOMELAB_E2E_CACHE"] ?? "/var/cache/homelab-secrets-e2e";
const conf = "/etc/homelab-secrets";
const wrapper = "/usr/bin/homelab-secrets-user";
const service = "webapp";
const secretsUnit = `homelab-secrets@${service}.service`;
const outputDir = `/run/${service}-secrets`;

/**
 * Random values with characters JSON, env files and shells escape. The random core survives
 * every encoding, so after purge any copy of it anywhere is a leak (and none comes from the repo).
 */
const cores: string[] = [];
const secret = (label: string) => {
  const core = `${label}-${randomBytes(12).toString("hex")}`;
  cores.push(core);
  return `${core} "q" $x`;
};
const values = {
  password: secret("pw"),
  username: "web",
  alice: secret("alice"),
  bob: secret("bob"),
  shared: secret("shared"),
  rotated: secret("rotated"),
  serviceToken: secret("ops_service"),
  userToken: secret("ops_user"),
  agent: secret("agent"),
};

function vault(password: string): Vault {
  return {
    vaults: {
      Demo: {
        items: {
          web: { fields: { password, username: values.username } },
          alice: { fields: { token: values.alice } },
          bob: { fields: { token: values.bob } },
          shared: { fields: { wifi: values.shared } },
        },
      },
    },
  };
}

const spec = {
  version: 1,
  name: service,
  outputDir,
  owner: service,
  group: service,
  dirMode: "0750",
  source: { type: "file", path: `${conf}/vault.json` },
  files: { password: { ref: "op://Demo/web/password", mode: "0400" } },
  envFiles: { [`${service}.env`]: { mode: "0400", vars: { DB_PASSWORD: "op://Demo/web/password" } } },
  templates: { "config.ini": { mode: "0440", content: "user = {{ op://Demo/web/username }}\npassword = {{ op://Demo/web/password }}\n" } },
};

const mapfile = `# edited by the admin
alice op://Demo/alice/token token dev
alice op://Demo/shared/wifi shared/wifi
bob op://Demo/bob/token token
`;

const timings: Record<string, number> = {};

describeE2E("Debian package: dpkg -i, a wired service, users, upgrade, remove, purge", () => {
  let s: Scenario;
  let work: string;
  let debs: { v1: string; v2: string; bytes: number };
  let setIdBefore: string;

  /** Build twice, with two version suffixes: the second is the upgrade. */
  function buildTwice(): { v1: string; v2: string; bytes: number } {
    const started = Date.now();
    const v1 = packageDeb({ outDir: work, versionSuffix: "~e2e1" });
    timings["build ms"] = Date.now() - started;
    const v2 = packageDeb({ outDir: work, versionSuffix: "~e2e2" });
    return { v1: v1.path, v2: v2.path, bytes: v1.bytes };
  }

  /** A nodejs (>= 20) .deb for the container's distribution, or "" when its own apt has one. */
  async function nodejsDeb(): Promise<string> {
    const candidate = (await s.c.sh("apt-cache policy nodejs | sed -n 's/^ *Candidate: *//p'")).stdout.trim();
    if (/^(\d+)/.test(candidate) && Number(/^(\d+)/.exec(candidate)![1]) >= 20) return "";
    const host = (await run("dpkg-query", ["-W", "-f=${Version}", "nodejs"], { allowFail: true })).stdout.trim();
    if (!/^(\d+)/.test(host) || Number(/^(\d+)/.exec(host)![1]) < 20) {
      throw new Error(
        `the container's apt offers nodejs ${candidate || "none"} and this host has no nodejs (>= 20) package to repack (${host || "none"})`,
      );
    }
    const cached = join(cacheDir, `nodejs_${host.replace(/[^A-Za-z0-9.+~-]/g, "_")}_repack.deb`);
    if (!existsSync(cached)) {
      const dir = mkdtempSync(join(cacheDir, ".repack-"));
      try {
        // -Znone: this is a cache on this machine, not a distributed package.
        await run(
          "sh",
          ["-c", 'cd "$1" && dpkg-repack --deb-option=-Znone nodejs >/dev/null 2>&1 && mv ./nodejs_*.deb "$2"', "sh", dir, cached],
          { timeoutMs: 300_000 },
        );
      } finally {
        rmSync(dir, { recursive: true, force: true });
      }
    }
    return cached;
  }

  async function shOk(script: string, args: string[] = [], timeoutMs = 120_000): Promise<string> {
    const r = await s.c.sh(script, args, { allowFail: true, timeoutMs });
    if (r.code !== 0) throw new Error(`${script} → ${r.code}\n${r.stderr}${r.stdout}`);
    return r.stdout;
  }

  async function timed(label: string, script: string, args: string[] = []): Promise<string> {
    const started = Date.now();
    const out = await shOk(script, args);
    timings[label] = Date.now() - started;
    return out;
  }

  const uid = (user: string) => s.uid(user);
  const setIdFiles = () => shOk("find / -xdev -type f -perm /6000 -printf '%p %u %m\\n' 2>/dev/null | sort");

  beforeAll(async () => {
    mkdirSync(cacheDir, { recursive: true });
    work = mkdtempSync(join(tmpdir(), "hs-deb-e2e-"));
    debs = buildTwice();
    s = await bootScenario("deb", vault(values.password), { hostNetwork: true }); // apt-get inside reaches the mirror
    // The scenario lays out a NixOS-like host for the other suites; this one starts from a
    // plain Debian: none of its config, account or group.
    await shOk("rm -rf /etc/homelab-secrets; userdel homelab-secrets 2>/dev/null; groupdel homelab-secrets 2>/dev/null; true");
    // Nor its credential agent units, which would shadow the package's in /usr/lib/systemd/system.
    await shOk(
      "systemctl stop homelab-secrets-agent.socket homelab-secrets-agent.service; rm -rf /etc/systemd/system/homelab-secrets-agent.* /etc/systemd/system/*.wants/homelab-secrets-agent.*; systemctl daemon-reload",
    );
    await shOk("apt-get update -q >/dev/null 2>&1 || apt-get update -q", [], 300_000);
    const node = await nodejsDeb();
    if (node) copyFileSync(node, join(s.c.root, "root/nodejs.deb"));
    await shOk(
      `DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends ${node ? "/root/nodejs.deb" : "nodejs"} >/dev/null`,
      [],
      600_000,
    );
    const distro = (
      await shOk(". /etc/os-release && echo \"$VERSION_CODENAME\"; systemctl --version | sed -n 's/^systemd \\([0-9]*\\).*/\\1/p'")
    )
      .trim()
      .split("\n");
    const nodejs = (await shOk("dpkg-query -W -f='${Version}' nodejs")).trim();
    console.log(
      `[package e2e] ${distro[0]} (systemd ${distro[1]}): nodejs ${nodejs} from ${node ? "this host's installed package, repacked" : "the distribution's apt"}`,
    );
    for (const [name, path] of Object.entries(debs)) if (name !== "bytes") copyFileSync(path as string, join(s.c.root, `root/${name}.deb`));
    await shOk(`useradd --system --user-group --no-create-home --shell /usr/sbin/nologin ${service}`);
    for (const user of ["alice", "bob"]) await shOk('useradd --create-home "$1"', [user]);
    setIdBefore = await setIdFiles();
  }, 900_000);

  afterAll(async () => {
    await s?.c.teardown();
    if (work) rmSync(work, { recursive: true, force: true });
    console.log(
      `[package e2e] .deb ${debs ? (debs.bytes / 1024).toFixed(0) : "?"} KiB; ${Object.entries(timings)
        .map(([k, v]) => `${k} ${v}`)
        .join(", ")}`,
    );
  }, 60_000);

  it("the container's nodejs package gives /usr/bin/node >= 20", async () => {
    const version = (await shOk("/usr/bin/node -p process.versions.node")).trim();
    expect(Number(version.split(".")[0])).toBeGreaterThanOrEqual(20);
    expect(await shOk("dpkg-query -W -f='${Status}' nodejs")).toBe("install ok installed");
  });

  it("dpkg -i installs it: the account, the wrapper SUID+SGID to it, root-owned code, root-only token files", async () => {
    await timed("install ms", "dpkg -i /root/v1.deb >/dev/null");
    expect(await shOk("dpkg-query -W -f='${Status} ${Version}' homelab-secrets")).toMatch(/^install ok installed .*~e2e1$/);
    const account = (await shOk("getent passwd homelab-secrets")).trim().split(":");
    expect(account[6]).toBe("/usr/sbin/nologin");
    expect(Number(account[2])).toBeLessThan(1000);
    expect((await shOk('stat -c "%U:%G %a" "$1"', [wrapper])).trim()).toBe("homelab-secrets:homelab-secrets 6511");
    expect((await shOk('dpkg-statoverride --list "$1"', [wrapper])).trim()).toBe(`homelab-secrets homelab-secrets 6511 ${wrapper}`);
    expect((await shOk('stat -c "%U:%G %a" /var/lib/homelab-secrets-user')).trim()).toBe("homelab-secrets:homelab-secrets 700");
    // Nothing of the code is writable by anyone but root, up to /.
    expect(await shOk("find /usr/lib/homelab-secrets /usr/bin/homelab-secrets \\( ! -user root -o -perm /022 \\) ! -type l -print")).toBe(
      "",
    );
    expect(Number((await shOk("find /usr/lib/homelab-secrets | wc -l")).trim())).toBeGreaterThan(50);
    expect(await shOk("stat -c '%U %a' / /usr /usr/lib /usr/bin \"$(readlink -f /usr/bin/node)\"")).toBe("root 755\n".repeat(5));
    expect(
      (await shOk(`stat -c '%n %U:%G %a' ${conf} ${conf}/services ${conf}/op-token ${conf}/op-connect-token ${conf}/mapfile`))
        .trim()
        .split("\n"),
    ).toEqual([
      `${conf} root:homelab-secrets 750`,
      `${conf}/services root:root 755`,
      `${conf}/op-token root:root 600`,
      `${conf}/op-connect-token root:root 600`,
      `${conf}/mapfile root:homelab-secrets 640`,
    ]);
    expect(await shOk(`cat ${conf}/op-token ${conf}/op-connect-token`)).toBe("");
    expect((await shOk("homelab-secrets --version")).trim()).toMatch(/^\d+\.\d+\.\d+/);
    expect((await s.c.show(secretsUnit, ["LoadState"])).LoadState).toBe("loaded");
  });

  it("a missing spec or an empty token fails the secrets unit with an error naming the file, and is not retried", async () => {
    const cases = [
      { instance: "nospec", setup: async () => {}, message: `${conf}/services/nospec.json` },
      {
        instance: "tokenless",
        setup: () =>
          s.c.writeFile(
            `${conf}/services/tokenless.json`,
            JSON.stringify({
              ...spec,
              name: "tokenless",
              outputDir: "/run/tokenless-secrets",
              owner: "root",
              group: "root",
              source: { type: "onepassword" },
            }),
            "0644",
          ),
        message: "/run/credentials/homelab-secrets@tokenless.service/op-token is empty",
      },
    ];
    for (const { instance, setup, message } of cases) {
      await setup();
      const unit = `homelab-secrets@${instance}.service`;
      const start = await s.c.cx(["systemctl", "start", unit], { allowFail: true });
      expect(start.code, unit).not.toBe(0);
      expect(await s.c.show(unit, ["ActiveState", "Result", "ExecMainStatus", "NRestarts"])).toEqual({
        ActiveState: "failed",
        Result: "exit-code",
        ExecMainStatus: "78",
        NRestarts: "0",
      });
      await s.c.syncJournal();
      const log = (await s.c.journal([unit])).map((e) => e.message).join("\n");
      expect(log, unit).toContain(message);
      expect((await s.c.sh('test -e "$1"', [`/run/${instance}-secrets`], { allowFail: true })).code, `/run/${instance}-secrets`).not.toBe(
        0,
      );
      await shOk(`systemctl reset-failed ${unit}`);
    }
    await shOk(`rm ${conf}/services/tokenless.json`);
  });

  it("a service wired by the shipped drop-in gets its secrets with the spec's owner and mode, re-fetches on restart, loses them on stop", async () => {
    await s.c.writeFile(`${conf}/vault.json`, JSON.stringify(vault(values.password)), "0640", "root:homelab-secrets");
    await s.c.writeFile(`${conf}/services/${service}.json`, JSON.stringify(spec, null, 2), "0644");
    await s.c.writeFile(
      `/etc/systemd/system/${service}.service`,
      `[Unit]\nDescription=e2e consumer\n[Service]\nUser=${service}\nGroup=${service}\nExecStart=/usr/local/bin/e2e-probe ${service}\n`,
    );
    // The example from the package's docs, with its service name replaced: what a newcomer copies.
    await shOk(
      'mkdir -p "/etc/systemd/system/$1.service.d" && sed "s/myapp/$1/g" /usr/share/doc/homelab-secrets/examples/plain-linux/myapp.service.d/homelab-secrets.conf > "/etc/systemd/system/$1.service.d/homelab-secrets.conf" && systemctl daemon-reload',
      [service],
    );
    expect(await shOk('homelab-secrets check --spec "$1"', [`${conf}/services/${service}.json`])).toMatch(/ok/);

    const check = async (password: string) => {
      const files = probeFiles(await waitForProbe(s.c, `${service}.service`, service));
      const [u, g] = [await uid(service), Number((await shOk(`getent group ${service}`)).split(":")[2])];
      const want: Record<string, { mode: string; content?: string }> = {
        password: { mode: "400", content: password },
        "config.ini": { mode: "440", content: `user = ${values.username}\npassword = ${password}\n` },
        [`${service}.env`]: { mode: "400" },
      };
      expect([...files.keys()].sort()).toEqual(
        Object.keys(want)
          .map((f) => `${outputDir}/${f}`)
          .sort(),
      );
      for (const [file, w] of Object.entries(want)) {
        const seen = files.get(`${outputDir}/${file}`)!;
        expect({ file, mode: seen.mode, uid: seen.uid, gid: seen.gid }).toEqual({ file, mode: w.mode, uid: u, gid: g });
        if (w.content !== undefined) expect(seen.sha256, file).toBe(sha256(w.content));
      }
      expect((await shOk('stat -c "%a %U %G" "$1"', [outputDir])).trim()).toBe(`750 ${service} ${service}`);
    };

    const start = await s.c.cx(["systemctl", "start", `${service}.service`], { allowFail: true });
    expect(start.code, start.stderr).toBe(0);
    await check(values.password);
    expect(await s.c.show(secretsUnit, ["ActiveState", "Result"])).toEqual({ ActiveState: "active", Result: "success" });
    // The env file reached the service through EnvironmentFile= in the drop-in.
    const { MainPID } = await s.c.show(`${service}.service`, ["MainPID"]);
    expect((await s.c.cx(["cat", `/proc/${MainPID}/environ`])).out.includes(Buffer.from(`DB_PASSWORD=${values.password}`))).toBe(true);

    const before = (await s.c.show(secretsUnit, ["InvocationID"])).InvocationID;
    await s.c.writeFile(`${conf}/vault.json`, JSON.stringify(vault(values.rotated)), "0640", "root:homelab-secrets");
    expect((await s.c.cx(["systemctl", "restart", `${service}.service`], { allowFail: true })).code).toBe(0);
    expect((await s.c.show(secretsUnit, ["InvocationID"])).InvocationID).not.toBe(before);
    await check(values.rotated);

    await shOk(`systemctl stop ${service}.service`);
    expect(await s.c.waitForState(secretsUnit, "inactive", 10_000)).toBe("inactive");
    expect((await s.c.sh('test -e "$1"', [outputDir], { allowFail: true })).code, `${outputDir} removed`).not.toBe(0);
  });

  it("the shipped refresh templates, enabled for one service: a value rotated at a fake Connect restarts it once, an unchanged one nothing; an empty HOMELAB_SECRETS_ON_CHANGE only rewrites", async () => {
    // The container shares the host's network: a fake Connect on the host's loopback.
    const name = "rotapp";
    const connectToken = `refresh-pkg-token-${randomBytes(6).toString("hex")}`;
    const current = { password: `rot-v1-${randomBytes(6).toString("hex")}` };
    const server = await startFakeConnect({
      vault: { vaults: { Demo: { items: { rot: { fields: { password: "seed" } } } } } },
      token: connectToken,
      port: 0,
      host: "127.0.0.1",
      mutateItem: (item) => {
        for (const f of item.fields) if (f.label === "password") f.value = current.password;
      },
    });
    const unit = `${name}.service`;
    const secrets = `homelab-secrets@${name}.service`;
    const refresh = `homelab-secrets-refresh@${name}.service`;
    const timer = `homelab-secrets-refresh@${name}.timer`;
    const dir = `/run/${name}-secrets`;
    const dropIns = [`/etc/systemd/system/${unit}.d`, `/etc/systemd/system/${secrets}.d`, `/etc/systemd/system/${refresh}.d`];
    const invocation = async (u: string) => (await s.c.show(u, ["InvocationID"])).InvocationID!;
    const fileState = async () => (await shOk('stat -c "%i %.9Y" "$1"; cat "$1"', [`${dir}/password`])).trim();
    const startRefresh = async () => {
      const r = await s.c.cx(["systemctl", "start", refresh], { allowFail: true, timeoutMs: 60_000 });
      await s.c.syncJournal();
      const log = (await s.c.journal([refresh])).map((e) => e.message).join("\n");
      expect(r.code, `${r.stderr}\n${log}`).toBe(0);
      expect(await s.c.show(refresh, ["Result"])).toEqual({ Result: "success" });
      return log;
    };
    try {
      await s.c.writeFile(`${conf}/op-connect-token`, connectToken, "0600");
      const rotSpec = {
        version: 1,
        name,
        outputDir: dir,
        source: { type: "connect", host: `http://127.0.0.1:${server.port}`, tokenCredential: "op-connect-token" },
        files: { password: { ref: "op://Demo/rot/password", mode: "0400" } },
        envFiles: { [`${name}.env`]: { vars: { ROT_PASSWORD: "op://Demo/rot/password" } } },
      };
      await s.c.writeFile(`${conf}/services/${name}.json`, JSON.stringify(rotSpec, null, 2), "0644");
      await s.c.writeFile(
        `/etc/systemd/system/${unit}`,
        `[Unit]\nDescription=e2e refresh consumer\n[Service]\nExecStart=/bin/sleep infinity\n`,
      );
      // The shipped example drop-in, and the documented ProcSubset=all for a plain-http Connect
      // on this host, for the secrets unit and its refresh unit alike.
      await shOk(
        'mkdir -p "$2" "$3" "$4" && sed "s/myapp/$1/g" /usr/share/doc/homelab-secrets/examples/plain-linux/myapp.service.d/homelab-secrets.conf > "$2/homelab-secrets.conf" && printf "[Service]\\nProcSubset=all\\n" > "$3/connect.conf" && cp "$3/connect.conf" "$4/connect.conf" && systemctl daemon-reload',
        [name, ...dropIns],
      );
      for (const u of ["homelab-secrets-refresh@.service", "homelab-secrets-refresh@.timer"])
        expect((await shOk('dpkg -S "/usr/lib/systemd/system/$1"', [u])).trim()).toMatch(/^homelab-secrets: /);
      expect((await s.c.show(timer, ["UnitFileState"])).UnitFileState, "shipped, not enabled").toBe("disabled");
      await shOk(`systemctl enable --now ${timer}`);
      expect(await s.c.show(timer, ["ActiveState", "Unit"])).toEqual({ ActiveState: "active", Unit: refresh });
      expect((await shOk(`systemctl show ${timer} --property=TimersMonotonic`)).trim()).toMatch(/OnUnitActiveUSec=1h\b/);

      const start = await s.c.cx(["systemctl", "start", unit], { allowFail: true, timeoutMs: 60_000 });
      expect(start.code, start.stderr).toBe(0);
      expect(await shOk('cat "$1"', [`${dir}/password`])).toBe(current.password);

      // Unchanged: nothing written, nothing restarted.
      const before = { unit: await invocation(unit), secrets: await invocation(secrets), file: await fileState() };
      server.clearRequests();
      const unchanged = await startRefresh();
      expect(server.requests.length, "it asked Connect").toBeGreaterThan(0);
      expect(unchanged).toMatch(new RegExp(`${name}: unchanged`));
      expect(await fileState()).toBe(before.file);
      expect(await invocation(unit)).toBe(before.unit);
      expect(await invocation(secrets)).toBe(before.secrets);

      // Rotated: rewritten, the service restarted exactly once, its secrets unit not re-run.
      current.password = `rot-v2-${randomBytes(6).toString("hex")}`;
      const rotated = await startRefresh();
      expect(await shOk('cat "$1"', [`${dir}/password`])).toBe(current.password);
      const after = await invocation(unit);
      expect(after, "restarted").not.toBe(before.unit);
      expect(await invocation(secrets), "its secrets unit not re-run").toBe(before.secrets);
      const { MainPID } = await s.c.show(unit, ["MainPID"]);
      expect((await s.c.cx(["cat", `/proc/${MainPID}/environ`])).out.includes(Buffer.from(`ROT_PASSWORD=${current.password}`))).toBe(true);
      await new Promise((r) => setTimeout(r, 1000));
      expect(await invocation(unit), "exactly once").toBe(after);
      expect(rotated).toMatch(new RegExp(`systemctl try-restart ${name}\\.service done`));
      expect(rotated).not.toContain(current.password);

      // HOMELAB_SECRETS_ON_CHANGE empty (a drop-in): rewritten, nothing restarted.
      await shOk('printf "[Service]\\nEnvironment=HOMELAB_SECRETS_ON_CHANGE=\\n" > "$1/on-change.conf" && systemctl daemon-reload', [
        dropIns[2]!,
      ]);
      current.password = `rot-v3-${randomBytes(6).toString("hex")}`;
      await startRefresh();
      expect(await shOk('cat "$1"', [`${dir}/password`])).toBe(current.password);
      expect(await invocation(unit), "not restarted").toBe(after);
    } finally {
      await s.c.cx(["systemctl", "disable", "--now", timer], { allowFail: true });
      await s.c.cx(["systemctl", "stop", unit], { allowFail: true });
      await s.c.cx(["rm", "-rf", ...dropIns, `/etc/systemd/system/${unit}`, `${conf}/services/${name}.json`], { allowFail: true });
      await s.c.cx(["systemctl", "daemon-reload"], { allowFail: true });
      await s.c.writeFile(`${conf}/op-connect-token`, "", "0600");
      await server.close();
    }
  }, 180_000);

  it("the shipped agent socket, enabled with a policy and a token in /etc/homelab-secrets, serves the shipped DynamicUser= example consumer from the installed files", async () => {
    // The container shares the host's network: a fake Connect on the host's loopback.
    const connectToken = `agent-pkg-token-${randomBytes(6).toString("hex")}`;
    const server = await startFakeConnect({
      vault: { vaults: { Demo: { items: { agent: { fields: { password: values.agent } } } } } },
      token: connectToken,
      port: 0,
      host: "127.0.0.1",
    });
    const consumer = "agent-example.service";
    try {
      const policy = {
        version: 1,
        source: { type: "connect", host: `http://127.0.0.1:${server.port}`, tokenCredential: "op-token" },
        units: { [consumer]: { files: { "db-password": { ref: "op://Demo/agent/password" } } } },
      };
      await s.c.writeFile(`${conf}/agent-policy.json`, JSON.stringify(policy, null, 2), "0600");
      await s.c.writeFile(`${conf}/op-token`, connectToken, "0600");
      await s.c.writeFile(
        "/usr/local/bin/pkg-agent-probe",
        '#!/bin/sh\necho "pkg-agent-probe uid $(id -u) file $1 sha256 $(sha256sum <"$1" | cut -d" " -f1)"\nexec sleep infinity\n',
        "0755",
      );
      // The shipped example, as a newcomer copies it: only its daemon replaced by the probe.
      await shOk(
        'sed "s|^ExecStart=/usr/bin/example-daemon --password-file=|ExecStart=/usr/local/bin/pkg-agent-probe |" /usr/share/doc/homelab-secrets/examples/plain-linux/agent/example-consumer.service > "/etc/systemd/system/$1" && grep -q "^ExecStart=/usr/local/bin/pkg-agent-probe %d/db-password$" "/etc/systemd/system/$1" && systemctl daemon-reload',
        [consumer],
      );
      expect((await s.c.show("homelab-secrets-agent.socket", ["UnitFileState"])).UnitFileState, "shipped, not enabled").toBe("disabled");
      await shOk("systemctl enable --now homelab-secrets-agent.socket");
      const start = await s.c.cx(["systemctl", "start", consumer], { allowFail: true });
      await s.c.syncJournal();
      const agentLog = async () => (await s.c.journal(["homelab-secrets-agent.service"])).map((e) => e.message).join("\n");
      expect(start.code, `${start.stderr}\n${await agentLog()}`).toBe(0);

      const { InvocationID = "" } = await s.c.show(consumer, ["InvocationID"]);
      let line = "";
      for (let i = 0; i < 100 && !line; i++) {
        await s.c.syncJournal();
        line = (await shOk('journalctl -b0 -o cat "_SYSTEMD_INVOCATION_ID=$1" | grep "^pkg-agent-probe " || true', [InvocationID])).trim();
        if (!line) await new Promise((r) => setTimeout(r, 100));
      }
      const m = /^pkg-agent-probe uid (\d+) file (\S+) sha256 (\S+)$/.exec(line);
      expect(m, line).toBeTruthy();
      expect(Number(m![1]), "a dynamic uid").toBeGreaterThanOrEqual(61184);
      expect(m![2], "%d in the shipped ExecStart=").toBe(`/run/credentials/${consumer}/db-password`);
      expect(m![3], "the value, read by the service itself").toBe(sha256(values.agent));

      // The agent ran from the package's files: its front end and, behind it, the installed CLI.
      const agentUnit = "homelab-secrets-agent.service";
      // The package's unit (bookworm's systemd names it by /lib, merged with /usr/lib).
      expect([`/usr/lib/systemd/system/${agentUnit}`, `/lib/systemd/system/${agentUnit}`]).toContain(
        (await s.c.show(agentUnit, ["FragmentPath"])).FragmentPath,
      );
      const { MainPID = "" } = await s.c.show(agentUnit, ["MainPID"]);
      expect((await shOk('readlink "/proc/$1/exe"', [MainPID])).trim()).toBe("/usr/libexec/homelab-secrets/homelab-secrets-agent");
      expect((await shOk("dpkg -S /usr/libexec/homelab-secrets/homelab-secrets-agent")).trim()).toMatch(/^homelab-secrets: /);
      const procs = (await shOk(`cat /sys/fs/cgroup/system.slice/${agentUnit}/cgroup.procs`)).trim().split("\n");
      const node = procs.find((p) => p !== MainPID);
      expect(node, "the Node agent beside the front end").toBeDefined();
      expect((await shOk('tr "\\0" " " < "/proc/$1/cmdline"', [node!])).trim()).toMatch(
        /^\/usr\/bin\/node \/usr\/lib\/homelab-secrets\/helper\/dist\/cli\.js agent --policy \/run\/credentials\/homelab-secrets-agent\.service\/agent-policy /,
      );
      const log = await agentLog();
      expect(log).toMatch(/agent-example\.service: credential db-password: served \d+ bytes/);
      expect(log, "no value in the agent's journal").not.toContain(values.agent);
      expect(server.requests.length, "the agent asked the fake Connect").toBeGreaterThan(0);
    } finally {
      await s.c.cx(["systemctl", "stop", consumer, "homelab-secrets-agent.service"], { allowFail: true });
      await s.c.cx(["systemctl", "disable", "--now", "homelab-secrets-agent.socket"], { allowFail: true });
      await s.c.cx(["rm", "-f", `/etc/systemd/system/${consumer}`, `${conf}/agent-policy.json`], { allowFail: true });
      await s.c.writeFile(`${conf}/op-token`, "", "0600");
      await server.close();
    }
  }, 120_000);

  it("two real users get exactly their mapfile entries through the installed wrapper", async () => {
    await s.c.writeFile(
      `${conf}/config.json`,
      JSON.stringify({ source: { type: "file", path: `${conf}/vault.json` } }),
      "0640",
      "root:homelab-secrets",
    );
    await s.c.writeFile(`${conf}/mapfile`, mapfile, "0640", "root:homelab-secrets");
    // As docs/debian.md says: the user-mode token belongs to the service account.
    await s.c.writeFile(`${conf}/token`, values.userToken, "0600", "homelab-secrets:homelab-secrets");
    for (const user of ["alice", "bob"]) await shOk('install -d -m 0700 -o "$1" -g "$1" "/run/user/$(id -u "$1")"', [user]);
    const doctor = await s.c.cx(["homelab-secrets", "doctor", "--wrapper", wrapper], { allowFail: true });
    expect(doctor.code, doctor.stdout + doctor.stderr).toBe(0);
    for (const user of ["alice", "bob"]) {
      const r = await s.c.cx(["runuser", "-u", user, "--", wrapper], { allowFail: true });
      expect(r.code, `${user}: ${r.stderr}`).toBe(0);
    }
    const listing = async (user: string) =>
      (await shOk('cd "/run/user/$(id -u "$1")/secrets" && find . -type f -printf "%P %u %m\\n" | sort', [user])).trim().split("\n");
    expect(await listing("alice")).toEqual(["shared/wifi alice 600", "token alice 600"]);
    expect(await listing("bob")).toEqual(["token bob 600"]);
    const read = async (user: string, path: string) => shOk('cat "/run/user/$(id -u "$1")/secrets/$2"', [user, path]);
    expect(await read("alice", "token")).toBe(values.alice);
    expect(await read("alice", "shared/wifi")).toBe(values.shared);
    expect(await read("bob", "token")).toBe(values.bob);
    for (const file of [`${conf}/vault.json`, `${conf}/mapfile`, `${conf}/op-token`, `${conf}/token`]) {
      expect((await s.c.cx(["runuser", "-u", "alice", "--", "cat", file], { allowFail: true })).code, file).not.toBe(0);
    }
  });

  it("with the installed CLI moved away, the wrapper says so in one line (78) and doctor names the fault", async () => {
    const cli = "/usr/lib/homelab-secrets/helper/dist/cli.js";
    await shOk('mv "$1" "$1.moved"', [cli]);
    try {
      const r = await s.c.cx(["runuser", "-u", "alice", "--", wrapper], { allowFail: true });
      expect(r.code, r.stderr).toBe(78);
      const lines = r.stderr.trim().split("\n");
      expect(lines, r.stderr).toHaveLength(1);
      expect(lines[0]).toContain(cli);
      // The installed CLI is gone, so doctor runs from the test's own copy of the helper.
      const d = await s.c.cx(["/opt/homelab-secrets/bin/homelab-secrets", "doctor", "--wrapper", wrapper], { allowFail: true });
      expect(d.code, d.stdout + d.stderr).toBe(78);
      expect(
        d.stdout
          .split("\n")
          .filter((l) => l.startsWith("UNSAFE"))
          .join("\n"),
        d.stdout,
      ).toContain("cli.js");
    } finally {
      await shOk('mv "$1.moved" "$1"', [cli]);
    }
    const again = await s.c.cx(["runuser", "-u", "alice", "--", wrapper], { allowFail: true });
    expect(again.code, again.stderr).toBe(0);
  });

  const confState = async () =>
    (await shOk(`cd ${conf} && find . -printf '%p %u:%g %m\\n' | sort`)) +
    (await shOk(`cd ${conf} && find . -type f -exec sha256sum {} + | sort`));

  it("upgrading to the next build keeps every /etc/homelab-secrets edit, the statoverride and the running secrets", async () => {
    await s.c.writeFile(`${conf}/op-token`, values.serviceToken, "0600");
    await s.c.writeFile(`${conf}/op-connect-token`, "", "0600");
    await shOk(`systemctl start ${service}.service`);
    const secretsBefore = await shOk(`sha256sum ${outputDir}/*`);
    const invocation = (await s.c.show(secretsUnit, ["InvocationID"])).InvocationID;
    const before = await confState();
    expect(before).toMatch(/\.\/mapfile root:homelab-secrets 640/);

    await timed("upgrade ms", "dpkg -i /root/v2.deb >/dev/null");
    expect(await shOk("dpkg-query -W -f='${Version}' homelab-secrets")).toMatch(/~e2e2$/);
    expect(await confState()).toBe(before);
    expect((await shOk('stat -c "%U:%G %a" "$1"', [wrapper])).trim()).toBe("homelab-secrets:homelab-secrets 6511");
    expect(await s.c.show(secretsUnit, ["ActiveState", "InvocationID"])).toEqual({ ActiveState: "active", InvocationID: invocation });
    expect(await shOk(`sha256sum ${outputDir}/*`)).toBe(secretsBefore);
    expect((await s.c.cx(["runuser", "-u", "bob", "--", wrapper], { allowFail: true })).code).toBe(0);
  });

  const needles = cores;
  /** Every file in the container's own filesystems and its /run that holds one of the values. */
  const filesHolding = async (strings: string[]): Promise<string[]> => {
    const r = await s.c.sh(
      'n=$#; for p; do set -- "$@" -e "$p"; done; shift "$n"; for d in / /run /tmp /var/tmp; do find "$d" -xdev -type f -print0 2>/dev/null; done | sort -zu | xargs -0 grep -lF "$@" 2>/dev/null || true',
      strings,
      { allowFail: true, timeoutMs: 300_000 },
    );
    return r.stdout.trim().split("\n").filter(Boolean).sort();
  };

  it("dpkg -r stops the secrets, removes the users' secrets, leaves no SUID binary, keeps the configuration", async () => {
    const before = await confState();
    await timed("remove ms", "dpkg -r homelab-secrets >/dev/null");
    expect(await setIdFiles()).toBe(setIdBefore);
    expect((await s.c.sh('test -e "$1"', [wrapper], { allowFail: true })).code).not.toBe(0);
    expect(await shOk("dpkg-statoverride --list")).not.toContain(wrapper);
    expect(await s.c.waitForState(secretsUnit, "inactive", 10_000)).toBe("inactive");
    expect((await s.c.sh('test -e "$1"', [outputDir], { allowFail: true })).code, `${outputDir} removed`).not.toBe(0);
    for (const user of ["alice", "bob"]) {
      expect(await shOk('find "/run/user/$(id -u "$1")/secrets" -type f 2>/dev/null || true', [user]), user).toBe("");
    }
    expect(await confState()).toBe(before);
    expect(await shOk("dpkg-query -W -f='${Status}' homelab-secrets")).toBe("deinstall ok config-files");
    // The scan below finds what is there: the kept configuration holds the vault and the token.
    expect(await filesHolding(needles)).toEqual([`${conf}/op-token`, `${conf}/token`, `${conf}/vault.json`]);
  });

  it("dpkg --purge leaves no configuration and no secret; the account stays, owning nothing", async () => {
    await timed("purge ms", "dpkg --purge homelab-secrets >/dev/null");
    expect((await s.c.sh('test -e "$1"', [conf], { allowFail: true })).code, `${conf} removed`).not.toBe(0);
    expect((await s.c.sh("dpkg-query -W homelab-secrets", [], { allowFail: true })).code).not.toBe(0);
    expect(await filesHolding(needles), "files holding a secret after purge").toEqual([]);
    const account = await shOk("getent passwd homelab-secrets");
    expect(account).toMatch(/:\/usr\/sbin\/nologin\n$/);
    expect(await shOk('for d in / /run /tmp /var/tmp; do find "$d" -xdev -user homelab-secrets 2>/dev/null; done')).toBe("");
  });
});
