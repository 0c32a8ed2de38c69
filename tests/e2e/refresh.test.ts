// Refresh under real systemd, with the units the Nix module renders (tests/golden/units.json):
// refresh-demo and reload-demo get their secrets from a fake Connect server whose values the
// test changes at runtime. A rotation rewrites the files and restarts (or reloads) the service
// once, without re-running its secrets unit (PartOf=) and without a second backend batch; an
// unchanged refresh touches nothing; a failed one leaves everything as it was.
import { afterAll, beforeAll, expect, it } from "vitest";
import type { ConnectItem, FakeConnect } from "../connect/fake-connect.mjs";
import {
  bootScenario,
  connectBackendOf,
  describeE2E,
  mainEnviron,
  probeFiles,
  serveConnect,
  sha256,
  waitForProbe,
  type Scenario,
} from "./scenario.js";
import { demoVault } from "./vault.js";

const service = "refresh-demo.service";
const secrets = "refresh-demo-secrets.service";
const refresh = "refresh-demo-secrets-refresh.service";
const dir = "/run/refresh-demo-secrets";

describeE2E("real systemd: refresh on a timer, restart or reload on a change", () => {
  let s: Scenario;
  let server: FakeConnect | undefined;
  let port = 0;
  let token = "";
  /** One backend batch for refresh-demo's spec, as a start of the service costs it. */
  let batch = 0;
  /** What the server answers now, by item title (the password field). */
  const current: Record<string, string> = { connect: "connect-v1", static: "static-v1 for reload" };
  const live = (item: ConnectItem) => {
    for (const f of item.fields) if (f.label === "password" && item.title in current) f.value = current[item.title];
  };
  const serve = async () => {
    server = await serveConnect(s.c, port, { vault: demoVault(), token, mutateItem: live });
  };

  beforeAll(async () => {
    s = await bootScenario("refresh");
    ({ port, token } = connectBackendOf(s, secrets));
    await serve();
  }, 120_000);
  afterAll(async () => {
    await server?.close();
    await s?.c.teardown();
  }, 60_000);

  const invocation = async (unit: string) => (await s.c.show(unit, ["InvocationID"])).InvocationID!;
  /** inode, mtime (ns), owner, mode and content hash of one file in the container. */
  const fileState = async (path: string) => (await s.c.sh(`stat -c '%i %.9Y %u:%g %a' "$1" && sha256sum <"$1"`, [path])).stdout.trim();
  /** A journal position; `journalSince` returns a unit's lines after it. */
  const cursor = async () => {
    const r = await s.c.cx(["journalctl", "-b0", "-n0", "--show-cursor", "--no-pager"], { allowFail: true });
    return /-- cursor: (\S+)/.exec(r.stdout)?.[1] ?? "";
  };
  const journalSince = async (unit: string, from: string) => {
    await s.c.syncJournal();
    return (await s.c.cx(["journalctl", "-b0", "-o", "cat", "-u", unit, `--after-cursor=${from}`], { allowFail: true })).stdout;
  };
  const startRefresh = (unit = refresh) => s.c.cx(["systemctl", "start", unit], { allowFail: true, timeoutMs: 60_000 });

  it("the service starts with its secrets; one start costs one batch of Connect requests", async () => {
    server!.clearRequests();
    const start = await s.c.cx(["systemctl", "start", service], { allowFail: true, timeoutMs: 60_000 });
    expect(start.code, start.stderr).toBe(0);
    batch = server!.requests.length;
    expect(batch).toBeGreaterThan(0);
    const files = probeFiles(await waitForProbe(s.c, service, "refresh-demo"));
    expect(files.get(`${dir}/password`)?.sha256).toBe(sha256("connect-v1"));
    console.log(`${s.distro} (systemd ${s.systemd}): one batch for refresh-demo = ${batch} Connect request(s)`);
  });

  it("a rotated value: files rewritten, the service restarted exactly once, its secrets unit not re-run, one batch", async () => {
    const before = { service: await invocation(service), secrets: await invocation(secrets), file: await fileState(`${dir}/password`) };
    current["connect"] = "connect-v2 rotated";
    server!.clearRequests();
    const from = await cursor();
    const r = await startRefresh();
    const journal = await journalSince(refresh, from);
    expect(r.code, `${r.stderr}\n${journal}`).toBe(0);
    expect(await fileState(`${dir}/password`)).not.toBe(before.file);
    expect((await s.c.cx(["cat", `${dir}/password`])).stdout).toBe("connect-v2 rotated");
    const after = await invocation(service);
    expect(after, "the service restarted").not.toBe(before.service);
    expect(await invocation(secrets), "the secrets unit was not restarted (no second fetch)").toBe(before.secrets);
    expect(server!.requests.length, "exactly one batch: the refresh's").toBe(batch);
    // The new run read what the refresh wrote: the file and its EnvironmentFile=.
    const files = probeFiles(await waitForProbe(s.c, service, "refresh-demo"));
    expect(files.get(`${dir}/password`)?.sha256).toBe(sha256("connect-v2 rotated"));
    expect((await mainEnviron(s.c, service)).get("REFRESH_PASSWORD")?.toString()).toBe("connect-v2 rotated");
    // Exactly once: no second start queued behind it.
    await new Promise((r) => setTimeout(r, 1000));
    expect(await invocation(service)).toBe(after);
    expect((await s.c.cx(["systemctl", "list-jobs", "--no-legend"])).stdout.trim()).toBe("");
    expect(journal).toMatch(/refresh-demo: changed: password \(content\), refresh\.env \(content\)/);
    expect(journal).toMatch(/systemctl try-restart refresh-demo\.service done/);
    expect(journal).not.toContain("connect-v2 rotated");
  });

  it("unchanged: nothing written (same inode and mtime), no restart, one batch", async () => {
    const before = { service: await invocation(service), secrets: await invocation(secrets) };
    const files = [await fileState(`${dir}/password`), await fileState(`${dir}/refresh.env`)];
    server!.clearRequests();
    const from = await cursor();
    const r = await startRefresh();
    const journal = await journalSince(refresh, from);
    expect(r.code, `${r.stderr}\n${journal}`).toBe(0);
    expect([await fileState(`${dir}/password`), await fileState(`${dir}/refresh.env`)]).toEqual(files);
    expect(await invocation(service)).toBe(before.service);
    expect(await invocation(secrets)).toBe(before.secrets);
    expect(server!.requests.length).toBe(batch);
    expect(journal).toMatch(/refresh-demo: unchanged \(2 file\(s\) from 1 reference\(s\) via connect\); nothing written/);
  });

  it("why the job mode: a plain try-restart of the service also re-runs its secrets unit (PartOf=), a second batch", async () => {
    const before = await invocation(secrets);
    server!.clearRequests();
    const r = await s.c.cx(["systemctl", "try-restart", service], { allowFail: true, timeoutMs: 60_000 });
    expect(r.code, r.stderr).toBe(0);
    expect(await invocation(secrets)).not.toBe(before);
    expect(server!.requests.length).toBe(batch);
  });

  it("the backend down: the refresh unit fails (75), files and service untouched", async () => {
    const before = { service: await invocation(service), secrets: await invocation(secrets) };
    const files = [await fileState(`${dir}/password`), await fileState(`${dir}/refresh.env`)];
    current["connect"] = "connect-v3 never seen";
    await server!.close();
    server = undefined;
    try {
      const r = await startRefresh();
      expect(r.code).not.toBe(0);
      expect(await s.c.show(refresh, ["Result", "ExecMainStatus"])).toEqual({ Result: "exit-code", ExecMainStatus: "75" });
      expect([await fileState(`${dir}/password`), await fileState(`${dir}/refresh.env`)]).toEqual(files);
      expect(await invocation(service)).toBe(before.service);
      expect(await invocation(secrets)).toBe(before.secrets);
      expect((await s.c.show(service, ["ActiveState"])).ActiveState).toBe("active");
    } finally {
      await serve();
      await s.c.cx(["systemctl", "reset-failed", refresh], { allowFail: true });
    }
  }, 60_000);

  it("the service stopped: the refresh is skipped (no outputDir), nothing created, nothing started, no request", async () => {
    await s.c.cx(["systemctl", "stop", service]);
    expect(await s.c.waitForState(secrets, "inactive", 10_000)).toBe("inactive");
    server!.clearRequests();
    const r = await startRefresh();
    expect(r.code, r.stderr).toBe(0);
    expect((await s.c.show(refresh, ["ConditionResult"])).ConditionResult).toBe("no");
    expect((await s.c.cx(["test", "-e", dir], { allowFail: true })).code, `${dir} not created`).not.toBe(0);
    expect((await s.c.show(service, ["ActiveState"])).ActiveState).toBe("inactive");
    expect((await s.c.show(secrets, ["ActiveState"])).ActiveState).toBe("inactive");
    expect(server!.requests).toEqual([]);
  });

  it('onChange = "reload": ExecReload= ran once, no restart, the secrets unit untouched', async () => {
    const start = await s.c.cx(["systemctl", "start", "reload-demo.service"], { allowFail: true, timeoutMs: 60_000 });
    expect(start.code, start.stderr).toBe(0);
    await s.c.cx(["rm", "-f", "/run/reload-demo.reloads"]);
    const before = { service: await invocation("reload-demo.service"), secrets: await invocation("reload-demo-secrets.service") };
    current["static"] = "static-v2 rotated for reload";
    const from = await cursor();
    const r = await startRefresh("reload-demo-secrets-refresh.service");
    expect(r.code, `${r.stderr}\n${await journalSince("reload-demo-secrets-refresh.service", from)}`).toBe(0);
    expect((await s.c.cx(["cat", "/run/reload-demo-secrets/password"])).stdout).toBe("static-v2 rotated for reload");
    expect((await s.c.cx(["cat", "/run/reload-demo.reloads"])).stdout).toBe("reloaded\n");
    expect(await invocation("reload-demo.service"), "reloaded, not restarted").toBe(before.service);
    expect(await invocation("reload-demo-secrets.service")).toBe(before.secrets);
    // Unchanged: no second reload.
    expect((await startRefresh("reload-demo-secrets-refresh.service")).code).toBe(0);
    expect((await s.c.cx(["cat", "/run/reload-demo.reloads"])).stdout).toBe("reloaded\n");
  });

  it("the timers: OnBootSec= and OnUnitActiveSec= 1h with RandomizedDelaySec= (5 min; 10 min for reload-demo), and they start", async () => {
    const timer = "refresh-demo-secrets-refresh.timer";
    const props = await s.c.show(timer, ["RandomizedDelayUSec", "Unit", "Persistent"]);
    expect(props["RandomizedDelayUSec"]).toBe("5min");
    expect(props["Unit"]).toBe(refresh);
    // One line per monotonic timer.
    const monotonic = (await s.c.cx(["systemctl", "show", timer, "--property=TimersMonotonic"])).stdout;
    expect(monotonic).toMatch(/OnBootUSec=1h\b/);
    expect(monotonic).toMatch(/OnUnitActiveUSec=1h\b/);
    expect(props["Persistent"]).toBe("no");
    expect((await s.c.show("reload-demo-secrets-refresh.timer", ["RandomizedDelayUSec"])).RandomizedDelayUSec).toBe("10min");
    const r = await s.c.cx(["systemctl", "start", timer], { allowFail: true });
    expect(r.code, r.stderr).toBe(0);
    expect(await s.c.show(timer, ["ActiveState"])).toEqual({ ActiveState: "active" });
    expect((await s.c.show(timer, ["NextElapseUSecMonotonic"])).NextElapseUSecMonotonic).not.toBe("");
  });

  it("the timer keeps firing while its runs are skipped (service stopped), and its first run after a start refreshes", async () => {
    // The same timer with a 2 s period (a drop-in): OnUnitActiveSec= must not stall when the
    // unit it starts is skipped by its condition.
    const timer = "refresh-demo-secrets-refresh.timer";
    await s.c.cx(["systemctl", "stop", timer, service]);
    await s.c.cx(["mkdir", "-p", `/etc/systemd/system/${timer}.d`]);
    await s.c.writeFile(
      `/etc/systemd/system/${timer}.d/fast.conf`,
      "[Timer]\nOnBootSec=\nOnUnitActiveSec=\nOnBootSec=1s\nOnUnitActiveSec=2s\nAccuracySec=100ms\nRandomizedDelaySec=0\n",
    );
    await s.c.cx(["systemctl", "daemon-reload"]);
    try {
      expect((await s.c.cx(["systemctl", "start", timer], { allowFail: true })).code).toBe(0);
      const triggers = new Set<string>();
      for (const until = Date.now() + 7000; Date.now() < until;) {
        const t = (await s.c.show(timer, ["LastTriggerUSecMonotonic"])).LastTriggerUSecMonotonic!;
        if (t && t !== "0") triggers.add(t);
        await new Promise((r) => setTimeout(r, 200));
      }
      expect(triggers.size, `distinct triggers in 7 s: ${[...triggers].join(", ")}`).toBeGreaterThanOrEqual(3);
      expect((await s.c.show(refresh, ["ConditionResult"])).ConditionResult).toBe("no");
      expect((await s.c.show(service, ["ActiveState"])).ActiveState).toBe("inactive");

      expect((await s.c.cx(["systemctl", "start", service], { allowFail: true, timeoutMs: 60_000 })).code).toBe(0);
      const started = await invocation(service);
      const secretsRun = await invocation(secrets);
      current["connect"] = "connect-v4 by the timer";
      let content = "";
      for (const until = Date.now() + 15_000; Date.now() < until && content !== current["connect"];) {
        content = (await s.c.cx(["cat", `${dir}/password`], { allowFail: true })).stdout;
        await new Promise((r) => setTimeout(r, 200));
      }
      expect(content, "the timer's refresh wrote the rotated value").toBe("connect-v4 by the timer");
      const deadline = Date.now() + 10_000;
      while ((await invocation(service)) === started && Date.now() < deadline) await new Promise((r) => setTimeout(r, 100));
      expect(await invocation(service), "and restarted the service").not.toBe(started);
      expect(await invocation(secrets), "not its secrets unit").toBe(secretsRun);
    } finally {
      await s.c.cx(["systemctl", "stop", timer], { allowFail: true });
      await s.c.cx(["rm", "-rf", `/etc/systemd/system/${timer}.d`]);
      await s.c.cx(["systemctl", "daemon-reload"]);
    }
  }, 90_000);

  it("cache-demo on cached values (Connect down at its start): its refresh brings back fresh values, the marker goes, doctor is quiet, one restart; unchanged: no restart", async () => {
    const name = "cache-demo";
    const cService = `${name}.service`;
    const cSecrets = `${name}-secrets.service`;
    const cRefresh = `${name}-secrets-refresh.service`;
    const cDir = `/run/${name}-secrets`;
    const marker = `/run/homelab-secrets/cached/${name}`;
    const reuseMs = 5000; // cache-demo's cache.reuse: a start within it would not ask Connect
    const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
    const password = async () => (await s.c.cx(["cat", `${cDir}/password`])).stdout;
    const hasMarker = async () => (await s.c.cx(["test", "-e", marker], { allowFail: true })).code === 0;
    const doctor = async () => (await s.c.cx(["/opt/homelab-secrets/bin/homelab-secrets", "doctor"], { allowFail: true })).stdout;
    const listed = new RegExp(`cached values: ${name} runs on values fetched`);
    /** Stop cache-demo, take Connect down, wait past the reuse window, start it: on cached values. */
    const startOnCached = async (sealedAt: number, expected: string) => {
      await s.c.cx(["systemctl", "stop", cService]);
      await s.c.waitForState(cSecrets, "inactive", 10_000);
      await server!.close();
      server = undefined;
      const left = sealedAt + reuseMs + 500 - Date.now();
      if (left > 0) await sleep(left);
      const r = await s.c.cx(["systemctl", "start", cService], { allowFail: true, timeoutMs: 60_000 });
      expect(r.code, r.stderr).toBe(0);
      expect(await hasMarker(), "started on cached values").toBe(true);
      expect(await password()).toBe(expected);
      expect(await doctor()).toMatch(listed);
    };

    current["connect"] = "cache-v1";
    expect((await s.c.cx(["systemctl", "start", cService], { allowFail: true, timeoutMs: 60_000 })).code).toBe(0);
    await startOnCached(Date.now(), "cache-v1");

    // Connect back with a value rotated meanwhile: the refresh writes it, drops the marker, restarts once.
    current["connect"] = "cache-v2 rotated";
    await serve();
    const before = { service: await invocation(cService), secrets: await invocation(cSecrets) };
    const from = await cursor();
    const r = await startRefresh(cRefresh);
    const sealedAt = Date.now();
    const journal = await journalSince(cRefresh, from);
    expect(r.code, `${r.stderr}\n${journal}`).toBe(0);
    expect(await password()).toBe("cache-v2 rotated");
    expect(await hasMarker(), "the marker is gone").toBe(false);
    expect(await doctor()).not.toMatch(listed);
    const after = await invocation(cService);
    expect(after, "restarted").not.toBe(before.service);
    expect(await invocation(cSecrets), "its secrets unit not re-run").toBe(before.secrets);
    expect(probeFiles(await waitForProbe(s.c, cService, name)).get(`${cDir}/password`)?.sha256).toBe(sha256("cache-v2 rotated"));
    await sleep(1000);
    expect(await invocation(cService), "exactly once").toBe(after);
    expect(journal).not.toContain("cache-v2");

    // The refresh sealed what it fetched: the next start with Connect down stands in with it.
    await startOnCached(sealedAt, "cache-v2 rotated");
    await serve();
    const unchanged = await invocation(cService);
    const r2 = await startRefresh(cRefresh);
    expect(r2.code, r2.stderr).toBe(0);
    expect(await hasMarker(), "unchanged, but fresh: the marker is gone").toBe(false);
    expect(await doctor()).not.toMatch(listed);
    expect(await invocation(cService), "unchanged: no restart").toBe(unchanged);
    await s.c.cx(["systemctl", "stop", cService]);
  }, 120_000);
});
