// The credential agent's Nix options (modules/agent.nix, homelab.secrets.<name>.delivery),
// evaluated against NixOS's own modules through tests/nix/eval-harness.nix.
import { expect, it } from "vitest";
import { asList, describeNixEval, type EvaluatedUnit as Unit } from "./nix-env.js";

describeNixEval("tests/nix/agent-eval.test.ts", 'nix: the credential agent (homelab.agent, delivery = "credentials")', (run) => {
  const cfg = (body: string) =>
    `{ homelab.onePassword.connectTokenFile = "/run/agenix/connect"; systemd.services.app.serviceConfig = { DynamicUser = true; ExecStart = "/bin/true"; }; ${body} }`;
  const app = `homelab.secrets.app = {
      delivery = "credentials"; dynamicUser = true;
      files.db.reference = "op://V/db/password";
      envFiles."app.env" = { vars.K = "op://V/api/key"; environmentFile = false; };
      templates."c.ini".content = "k = {{ op://V/api/key }}";
    };`;
  const agent = `homelab.agent = { enable = true; source = { type = "connect"; host = "http://127.0.0.1:8080"; }; ttl = 60; idleExit = 30; };`;

  it("a credentials service gets LoadCredential= from the agent's socket on itself, a guard first, no -secrets unit and no token", () => {
    const units = run("units", cfg(app + agent)) as Record<string, Unit>;
    expect(Object.keys(units).filter((u) => u.startsWith("app"))).toEqual(["app.service"]);
    const service = units["app.service"]!;
    expect(asList(service["Service"]!["LoadCredential"]).sort()).toEqual(
      ["app.env", "c.ini", "db"].map((id) => `${id}:/run/homelab-secrets/credentials.sock`),
    );
    expect(asList(service["Service"]!["ExecStartPre"])[0]).toMatch(
      /\/libexec\/homelab-secrets\/homelab-secrets-agent --guard (?=.*\bdb\b)(?=.*'?app\.env'?)(?=.*'?c\.ini'?)/,
    );
    expect(JSON.stringify(service), "no token in the service").not.toMatch(/op-connect-token|agenix/);
    expect(String(service["Unit"]!["After"])).toContain("homelab-secrets-agent.socket");
    expect(String(service["Unit"]!["Requires"])).toContain("homelab-secrets-agent.socket");
  });

  it("the agent: a root-only socket, a DynamicUser= service with the token as its own credential, TTL, idle and deadline", () => {
    const units = run("units", cfg(app + agent)) as Record<string, Unit>;
    expect(units["homelab-secrets-agent.socket"]!["Socket"]).toMatchObject({
      ListenStream: "/run/homelab-secrets/credentials.sock",
      SocketMode: "0600",
      SocketUser: "root",
      Accept: "false",
    });
    const s = units["homelab-secrets-agent.service"]!["Service"]!;
    expect(s["DynamicUser"]).toBe("true");
    expect(s["LimitCORE"]).toBe("0");
    expect(s["LoadCredential"]).toBe("op-connect-token:/run/agenix/connect");
    expect(s["ProtectProc"], "the peer's /proc/PID/cgroup must stay readable").toBe("default");
    expect(s["PrivateUsers"], "SO_PEERCRED must see uid 0").toBeUndefined();
    expect(String(s["ExecStart"])).toMatch(
      /homelab-secrets-agent --idle-exit 30 -- \S+\/bin\/homelab-secrets agent --policy \S+-homelab-secrets-agent-policy\.json --ttl 60 --deadline 45$/,
    );
  });

  it("throughAgent (or homelab.agent.serveFiles): the -secrets unit installs what the agent serves, with no token and no network", () => {
    const files = `systemd.services.web.serviceConfig.ExecStart = "/bin/true"; homelab.secrets.web = { files.pw.reference = "op://V/db/password"; envFiles."web.env".vars.K = "op://V/api/key"; };`;
    for (const how of [`homelab.secrets.web.throughAgent = true;`, `homelab.agent.serveFiles = true;`]) {
      const units = run("units", cfg(files + how + agent)) as Record<string, Unit>;
      const s = units["web-secrets.service"]!["Service"]!;
      expect(String(s["ExecStart"])).toMatch(/\/bin\/homelab-secrets install --spec \S+-web-spec\.json$/);
      expect(asList(s["LoadCredential"]).sort()).toEqual([
        "pw:/run/homelab-secrets/credentials.sock",
        "web.env:/run/homelab-secrets/credentials.sock",
      ]);
      expect(s["PrivateNetwork"]).toBe("true");
      expect(String(units["web-secrets.service"]!["Unit"]!["Requires"])).toContain("homelab-secrets-agent.socket");
      expect(units["web.service"]!["Service"]!["EnvironmentFile"]).toBe("/run/web-secrets/web.env");
    }
    const plain = run("units", cfg(files + agent)) as Record<string, Unit>;
    expect(String(plain["web-secrets.service"]!["Service"]!["ExecStart"]), "default: the -secrets unit fetches itself").toMatch(
      / fetch --spec /,
    );
    const failures = (run("failedAssertions", cfg(files + `homelab.secrets.web.throughAgent = true;`)) as string[]).join("\n");
    expect(failures).toMatch(/web get their files through the agent \(throughAgent\); set homelab\.agent\.enable = true/);
  });

  it("refuses a credentials service without the agent, a bad reference in one, and an agent without a token", () => {
    const failures = (c: string) => (run("failedAssertions", c) as string[]).join("\n");
    expect(failures(cfg(app))).toMatch(/app use delivery = "credentials"; set homelab\.agent\.enable = true/);
    expect(failures(cfg(app.replace("op://V/db/password", "op://V/db") + agent))).toMatch(/invalid secret reference "op:\/\/V\/db"/);
    expect(
      failures(
        `{ systemd.services.app.serviceConfig = { DynamicUser = true; ExecStart = "/bin/true"; }; ${app} homelab.agent.enable = true; }`,
      ),
    ).toMatch(/the agent has no token for its onepassword source; set homelab\.agent\.tokenFile or homelab\.onePassword\.tokenFile/);
    expect(failures(cfg(app + agent))).toBe("");
  });

  it("homelab.agent.cache: a root key unit before the agent, the key as LoadCredentialEncrypted=, a private state directory, --cache", () => {
    const cached = `${agent} homelab.agent.cache = { enable = true; maxAge = 86400; };`;
    const units = run("units", cfg(app + cached)) as Record<string, Unit>;
    const agentUnit = units["homelab-secrets-agent.service"]!;
    const s = agentUnit["Service"]!;
    expect(s["LoadCredentialEncrypted"]).toBe("agent-cache-key:/var/lib/homelab-secrets/agent-cache-key.cred");
    expect(s["StateDirectory"]).toBe("homelab-secrets-agent");
    expect(s["StateDirectoryMode"]).toBe("0700");
    expect(s["DynamicUser"]).toBe("true");
    expect(String(s["ExecStart"])).toMatch(/ agent --policy \S+ --ttl 60 --deadline 45 --cache --cache-max-age 86400$/);
    expect(String(agentUnit["Unit"]!["Requires"])).toContain("homelab-secrets-agent-key.service");
    expect(String(agentUnit["Unit"]!["After"])).toContain("homelab-secrets-agent-key.service");
    const key = units["homelab-secrets-agent-key.service"]!;
    expect(key["Unit"]!["Before"]).toContain("homelab-secrets-agent.service");
    expect(key["Unit"]!["StartLimitIntervalSec"]).toBe("0");
    expect(key["Service"]).toMatchObject({
      Type: "oneshot",
      UMask: "0077",
      StateDirectory: "homelab-secrets",
      StateDirectoryMode: "0700",
    });
    expect(key["Service"]!["User"], "root: it seals with the host key").toBeUndefined();
    expect(String(key["Service"]!["ExecStartPre"])).toMatch(/\/bin\/systemd-creds setup$/);
    expect(String(key["Service"]!["ExecStart"])).toMatch(/-homelab-secrets-agent-key$/);

    const plain = run("units", cfg(app + agent)) as Record<string, Unit>;
    expect(plain["homelab-secrets-agent-key.service"], "no key unit without the cache").toBeUndefined();
    expect(plain["homelab-secrets-agent.service"]!["Service"]!["LoadCredentialEncrypted"]).toBeUndefined();
    expect(String(plain["homelab-secrets-agent.service"]!["Service"]!["ExecStart"])).not.toMatch(/--cache/);
  });

  it("homelab.agent.notFoundTtl: passed as --not-found-ttl; unset, the agent's own default (no flag)", () => {
    const agentExec = (extra: string) =>
      String((run("units", cfg(app + agent + extra)) as Record<string, Unit>)["homelab-secrets-agent.service"]!["Service"]!["ExecStart"]);
    expect(agentExec(" homelab.agent.notFoundTtl = 0;")).toMatch(/ --ttl 60 --deadline 45 --not-found-ttl 0$/);
    expect(agentExec("")).not.toMatch(/--not-found-ttl/);
  });

  it("a credentials service's cache.enable is refused with a pointer to homelab.agent.cache", () => {
    const failures = (run("failedAssertions", cfg(app.replace("delivery =", "cache.enable = true; delivery =") + agent)) as string[]).join(
      "\n",
    );
    expect(failures).toMatch(
      /cache\.enable is for root-run secrets units that fetch themselves; not with delivery = "credentials" \(set homelab\.agent\.cache\.enable = true/,
    );
  });
  it('refresh for delivery = "credentials": a timer and a root oneshot loading the same IDs from the agent, comparing with the running service', () => {
    const refreshed = app.replace("delivery =", `refresh = { interval = "30m"; randomizedDelay = "1m"; }; delivery =`);
    const units = run("units", cfg(refreshed + agent)) as Record<string, Unit>;
    const r = units["app-secrets-refresh.service"]!;
    expect(asList(r["Service"]!["LoadCredential"]).sort()).toEqual(
      ["app.env", "c.ini", "db"].map((id) => `${id}:/run/homelab-secrets/credentials.sock`),
    );
    expect(String(r["Service"]!["ExecStart"])).toMatch(
      /\/bin\/homelab-secrets refresh-credentials --service app\.service (?=.*'--id=db')(?=.*'--id=app\.env')(?=.*'--id=c\.ini')/,
    );
    expect(String(r["Service"]!["ExecStart"])).not.toMatch(/--no-restart/);
    expect(r["Unit"]!["ConditionPathIsDirectory"], "skipped while the service is not running").toBe("/run/credentials/app.service");
    expect(String(r["Unit"]!["Requires"])).toContain("homelab-secrets-agent.socket");
    expect(r["Service"]!["Type"]).toBe("oneshot");
    expect(r["Service"]!["User"], "root: it reads the running service's credentials").toBeUndefined();
    expect(r["Service"]!["PrivateNetwork"]).toBe("true");
    expect(asList(r["Service"]!["CapabilityBoundingSet"]).sort(), "reads the service's credentials via /proc/1/root").toEqual([
      "CAP_DAC_OVERRIDE",
      "CAP_SYS_PTRACE",
    ]);
    expect(r["Service"]!["ProtectSystem"]).toBe("strict");
    expect(JSON.stringify(r), "no token in the refresh unit").not.toMatch(/op-connect-token|agenix/);
    expect(units["app-secrets-refresh.timer"]!["Timer"]).toEqual({ OnBootSec: "30m", OnUnitActiveSec: "30m", RandomizedDelaySec: "1m" });
    const without = run("units", cfg(app + agent)) as Record<string, Unit>;
    expect(units["app.service"], "the service is exactly as without refresh").toEqual(without["app.service"]);
    expect(Object.keys(without).filter((u) => u.includes("refresh"))).toEqual([]);
    const none = run("units", cfg(refreshed.replace("refresh = {", `refresh = { onChange = "none";`) + agent)) as Record<string, Unit>;
    expect(String(none["app-secrets-refresh.service"]!["Service"]!["ExecStart"])).toMatch(/ --no-restart /);
  });

  it('refresh for delivery = "credentials": the policy names the refresh unit as refreshing the service', () => {
    const refreshed = app.replace("delivery =", `refresh.interval = "30m"; delivery =`);
    const golden = run("golden", cfg(refreshed + agent), { readWrite: true }) as {
      files: Record<string, string>;
    };
    const [, text] = Object.entries(golden.files).find(([path]) => path.endsWith("-homelab-secrets-agent-policy.json"))!;
    const policy = JSON.parse(text) as { units: Record<string, unknown> };
    expect(policy.units["app-secrets-refresh.service"]).toEqual({ refreshes: "app.service" });
    expect(Object.keys(policy.units).sort()).toEqual(["app-secrets-refresh.service", "app.service"]);
  });

  it("refresh with throughAgent: a root oneshot loading the -secrets unit's outputs fresh from the agent, no token, no network", () => {
    const web = `systemd.services.web.serviceConfig.ExecStart = "/bin/true"; homelab.secrets.web = { throughAgent = true; files.pw.reference = "op://V/db/password"; envFiles."web.env".vars.K = "op://V/api/key"; };`;
    const refreshed = web.replace("throughAgent = true;", `throughAgent = true; refresh = { interval = "30m"; onChange = "reload"; };`);
    expect((run("failedAssertions", cfg(refreshed + agent)) as string[]).join("\n")).toBe("");
    const units = run("units", cfg(refreshed + agent)) as Record<string, Unit>;
    const without = run("units", cfg(web + agent)) as Record<string, Unit>;
    const r = units["web-secrets-refresh.service"]!;
    const secrets = units["web-secrets.service"]!;
    expect(asList(r["Service"]!["LoadCredential"]).sort()).toEqual(asList(secrets["Service"]!["LoadCredential"]).sort());
    expect(asList(r["Service"]!["LoadCredential"]).sort()).toEqual([
      "pw:/run/homelab-secrets/credentials.sock",
      "web.env:/run/homelab-secrets/credentials.sock",
    ]);
    expect(String(r["Service"]!["ExecStart"])).toMatch(
      /\/bin\/homelab-secrets refresh --spec \S+-web-spec\.json --from-credentials --reload web\.service$/,
    );
    expect(String(r["Service"]!["ExecStart"]).match(/\S+-web-spec\.json/)![0], "the -secrets unit's spec").toBe(
      String(secrets["Service"]!["ExecStart"]).match(/\S+-web-spec\.json/)![0],
    );
    expect(r["Unit"]!["ConditionPathIsDirectory"], "skipped while the service is not running").toBe("/run/web-secrets");
    expect(asList(r["Unit"]!["After"]).join(" ")).toContain("homelab-secrets-agent.socket");
    expect(asList(r["Unit"]!["Requires"]).join(" ")).toContain("homelab-secrets-agent.socket");
    expect(asList(r["Unit"]!["After"]).join(" ")).not.toContain("network-online.target");
    expect(r["Service"]!["PrivateNetwork"]).toBe("true");
    expect(r["Service"]!["User"]).toBeUndefined();
    expect(asList(r["Service"]!["ReadWritePaths"])).toEqual(["-/run/web-secrets"]);
    expect(JSON.stringify(r), "no token in the refresh unit").not.toMatch(/op-connect-token|agenix/);
    expect(units["web-secrets-refresh.timer"]!["Timer"]).toMatchObject({ OnBootSec: "30m", OnUnitActiveSec: "30m" });
    expect(units["web-secrets.service"], "the -secrets unit is exactly as without refresh").toEqual(without["web-secrets.service"]);
    expect(units["web.service"]).toEqual(without["web.service"]);

    const golden = run("golden", cfg(refreshed + agent), { readWrite: true }) as {
      files: Record<string, string>;
    };
    const [, text] = Object.entries(golden.files).find(([path]) => path.endsWith("-homelab-secrets-agent-policy.json"))!;
    const policy = JSON.parse(text) as { units: Record<string, unknown> };
    expect(policy.units["web-secrets-refresh.service"]).toEqual({ refreshes: "web-secrets.service" });
    expect(Object.keys(policy.units).sort()).toEqual(["web-secrets-refresh.service", "web-secrets.service"]);
  });

  it('refresh onChange = "reload" with delivery = "credentials" is refused (a reload keeps the old credentials)', () => {
    const failures = (c: string) => (run("failedAssertions", c) as string[]).join("\n");
    const reload = app.replace("delivery =", `refresh = { interval = "30m"; onChange = "reload"; }; delivery =`);
    expect(failures(cfg(reload + agent))).toMatch(
      /homelab-secrets \(app\): refresh\.onChange = "reload" cannot work with delivery = "credentials": systemd loads a service's credentials only when it starts/,
    );
    expect(failures(cfg(app.replace("delivery =", `refresh.interval = "30m"; delivery =`) + agent))).toBe("");
  });
});
