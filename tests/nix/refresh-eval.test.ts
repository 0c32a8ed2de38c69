// homelab.secrets.<name>.refresh and homelab.mkRefreshUnits, evaluated against NixOS's own
// modules through tests/nix/eval-harness.nix: the refresh timer and service, what they share
// with the secrets unit, and that nothing else changes.
import { expect, it } from "vitest";
import { asList, describeNixEval, type EvaluatedUnit as Unit } from "./nix-env.js";

describeNixEval("tests/nix/refresh-eval.test.ts", "nix: refresh (homelab.secrets.<name>.refresh, homelab.mkRefreshUnits)", (run) => {
  const units = (c: string) => run("units", c) as Record<string, Unit>;
  const failures = (c: string) => (run("failedAssertions", c) as string[]).join("\n");

  const base = `homelab.onePassword.tokenFile = "/run/agenix/op";
      homelab.onePassword.connectTokenFile = "/run/agenix/connect";
      users.users.web = { isSystemUser = true; group = "web"; }; users.groups.web = { };
      systemd.services.web.serviceConfig = { User = "web"; ExecStart = "/bin/true"; };`;
  const web = (refresh: string, extra = "") =>
    `{ ${base} homelab.secrets.web = { files.pw.reference = "op://V/db/password"; envFiles."web.env".vars.K = "op://V/api/key"; ${extra} ${refresh} }; }`;
  const hardeningKeys = [
    "ProtectSystem",
    "ProtectHome",
    "PrivateTmp",
    "PrivateDevices",
    "NoNewPrivileges",
    "ProtectProc",
    "ProcSubset",
    "CapabilityBoundingSet",
    "SystemCallFilter",
    "RestrictAddressFamilies",
    "LimitCORE",
    "UMask",
    "PrivateNetwork",
  ];

  it("refresh.interval: a oneshot that refreshes the secrets unit's spec with its token and sandbox, restarting only the service", () => {
    const u = units(web(`refresh.interval = "1h";`));
    const refresh = u["web-secrets-refresh.service"]!;
    const secrets = u["web-secrets.service"]!;
    const s = refresh["Service"]!;
    const spec = / fetch --spec (\S+) /.exec(String(secrets["Service"]!["ExecStart"]))![1]!;
    expect(s["ExecStart"]).toMatch(
      new RegExp(`/bin/homelab-secrets refresh --spec ${spec.replace(/[.+]/g, "\\$&")} --deadline 45 --restart web\\.service$`),
    );
    expect(s["Type"]).toBe("oneshot");
    expect(s["User"], "root, like the secrets unit").toBeUndefined();
    expect(s["LoadCredential"]).toEqual(secrets["Service"]!["LoadCredential"]);
    for (const key of hardeningKeys) expect(s[key], key).toEqual(secrets["Service"]![key]);
    expect(s["ReadWritePaths"]).toBe("-/run/web-secrets");
    expect(s["RemainAfterExit"]).toBeUndefined();
    expect(Number(s["TimeoutStartSec"])).toBeGreaterThan(45);
    const unit = refresh["Unit"]!;
    expect(asList(unit["After"]).join(" ").split(" ")).toContain("web-secrets.service");
    expect(unit["ConditionPathIsDirectory"]).toBe("/run/web-secrets");
    for (const key of ["Requires", "Wants", "BindsTo", "Requisite", "PartOf"])
      expect(asList(unit[key]).join(" "), `${key}: never pulls in the service or its secrets unit`).not.toMatch(/web(-secrets)?\.service/);
    expect(refresh["Install"], "started by its timer only").toBeUndefined();
  });

  it("the timer: OnBootSec= and OnUnitActiveSec= the interval, RandomizedDelaySec= (default 5m), in timers.target, not Persistent", () => {
    const t = units(web(`refresh.interval = "30min";`))["web-secrets-refresh.timer"]!;
    expect(t["Timer"]).toEqual({ OnBootSec: "30min", OnUnitActiveSec: "30min", RandomizedDelaySec: "5m" });
    expect(t["Install"]).toEqual({ WantedBy: "timers.target" });
    const custom = units(web(`refresh = { interval = "6h"; randomizedDelay = "45m"; };`))["web-secrets-refresh.timer"]!;
    expect(custom["Timer"]!["RandomizedDelaySec"]).toBe("45m");
  });

  it('onChange = "reload" → --reload; "none" → neither', () => {
    expect(
      String(units(web(`refresh = { interval = "1h"; onChange = "reload"; };`))["web-secrets-refresh.service"]!["Service"]!["ExecStart"]),
    ).toMatch(/ --reload web\.service$/);
    const none = String(
      units(web(`refresh = { interval = "1h"; onChange = "none"; };`))["web-secrets-refresh.service"]!["Service"]!["ExecStart"],
    );
    expect(none).toMatch(/ refresh --spec \S+ --deadline 45$/);
  });

  it("a Connect source over plain http: the refresh unit also sees /proc/net and the Connect token; --serialize adds the lock directory", () => {
    const u = units(
      web(`refresh.interval = "1h";`, `source = { type = "connect"; host = "http://127.0.0.1:8080"; }; serialize = true; deadline = 10;`),
    );
    const s = u["web-secrets-refresh.service"]!["Service"]!;
    expect(s["ProcSubset"]).toBe("all");
    expect(s["LoadCredential"]).toBe("op-connect-token:/run/agenix/connect");
    expect(asList(s["ReadWritePaths"])).toEqual(["-/run/web-secrets", "/run/homelab-secrets"]);
    expect(String(s["ExecStart"])).toMatch(/ refresh --spec \S+ --deadline 10 --serialize --restart web\.service$/);
  });

  it("refresh off (the default): no refresh units; with it on, the secrets unit and the service are exactly as without", () => {
    const off = units(web(""));
    const on = units(web(`refresh.interval = "1h";`));
    expect(Object.keys(off).filter((n) => n.includes("refresh"))).toEqual([]);
    expect(
      Object.keys(on)
        .filter((n) => n.includes("refresh"))
        .sort(),
    ).toEqual(["web-secrets-refresh.service", "web-secrets-refresh.timer"]);
    expect(on["web-secrets.service"]).toEqual(off["web-secrets.service"]);
    expect(on["web.service"]).toEqual(off["web.service"]);
  });

  it("refused with a clear message for dynamicUser; accepted otherwise (throughAgent: tests/nix/agent-eval.test.ts)", () => {
    const message =
      /homelab-secrets \(web\): refresh is only available for delivery = "files" without dynamicUser, and for delivery = "credentials"/;
    const agent = `homelab.agent = { enable = true; source = { type = "connect"; host = "http://127.0.0.1:8080"; }; };`;
    expect(failures(web(`refresh.interval = "1h"; throughAgent = true;`).replace(/}$/, `${agent} }`))).toBe("");
    const dyn = `{ ${base.replace(`User = "web";`, "DynamicUser = true;")} homelab.secrets.web = { dynamicUser = true; files.pw.reference = "op://V/db/password"; refresh.interval = "1h"; }; }`;
    expect(failures(dyn)).toMatch(message);
    const creds = `{ ${base.replace(`User = "web";`, "DynamicUser = true;")} ${agent} homelab.secrets.web = { delivery = "credentials"; dynamicUser = true; files.pw.reference = "op://V/db/password"; refresh.interval = "1h"; }; }`;
    expect(failures(creds), 'delivery = "credentials" has its own refresh (tests/nix/agent-eval.test.ts)').not.toMatch(/refresh/);
    expect(failures(web(`refresh.interval = "1h";`))).toBe("");
  });

  it("with the cache on: --cache, the host key's setup, the state directory, the TPM and the marker directory, as the secrets unit has them", () => {
    const u = units(web(`refresh.interval = "1h";`, `cache.enable = true; serialize = true;`));
    const s = u["web-secrets-refresh.service"]!["Service"]!;
    const secrets = u["web-secrets.service"]!["Service"]!;
    expect(String(s["ExecStart"])).toMatch(/ refresh --spec \S+ --deadline 45 --serialize --cache --restart web\.service$/);
    expect(String(s["ExecStart"]), "the cache's ages are the fetch's: a refresh never reads the cache").not.toMatch(
      /--cache-(max-age|reuse)/,
    );
    expect(asList(s["ExecStartPre"])).toEqual(asList(secrets["ExecStartPre"]).filter((c) => c.includes("systemd-creds setup")));
    expect(asList(s["ExecStartPre"])).toHaveLength(1);
    for (const key of ["StateDirectory", "StateDirectoryMode", "BindPaths", "DeviceAllow", "PrivateDevices", "ProtectSystem"])
      expect(s[key], key).toEqual(secrets[key]);
    expect(s["StateDirectory"]).toBe("homelab-secrets");
    expect(asList(s["ReadWritePaths"])).toEqual(["-/run/web-secrets", "/run/homelab-secrets", "-/run/homelab-secrets/cached"]);
    // Through homelab.mkRefreshUnits as well, with mkSecretService's cache argument.
    const args = `name = "api"; files.pw = "op://V/api/key"; source = { type = "file"; path = "/etc/hs/vault.json"; }; cache = { maxAge = 60; };`;
    const direct = units(
      `{ homelab, ... }: { systemd.services = (homelab.mkRefreshUnits { ${args} }).services // { api.serviceConfig.ExecStart = "/bin/true"; }; }`,
    )["api-secrets-refresh.service"]!["Service"]!;
    expect(String(direct["ExecStart"])).toMatch(/ --cache --restart api\.service$/);
    expect(direct["StateDirectory"]).toBe("homelab-secrets");
    // Off: none of it.
    const off = units(web(`refresh.interval = "1h";`))["web-secrets-refresh.service"]!["Service"]!;
    expect(String(off["ExecStart"])).not.toMatch(/--cache/);
    for (const key of ["ExecStartPre", "StateDirectory", "BindPaths", "DeviceAllow"]) expect(off[key], key).toBeUndefined();
  });

  it("homelab.mkRefreshUnits for plain helper users: the same units for a mkSecretService-made secrets unit", () => {
    const args = `name = "api"; files.pw = "op://V/api/key"; owner = "web"; source = { type = "file"; path = "/etc/hs/vault.json"; };`;
    const c = `{ homelab, ... }: let r = homelab.mkRefreshUnits { ${args} interval = "2h"; onChange = "reload"; randomizedDelay = "10m"; }; in {
        users.users.web = { isSystemUser = true; group = "web"; }; users.groups.web = { };
        systemd.services = r.services // { api-secrets = homelab.mkSecretService { ${args} }; api.serviceConfig.ExecStart = "/bin/true"; };
        systemd.timers = r.timers;
      }`;
    const u = units(c);
    const s = u["api-secrets-refresh.service"]!["Service"]!;
    const spec = / fetch --spec (\S+) /.exec(String(u["api-secrets.service"]!["Service"]!["ExecStart"]))![1]!;
    expect(/ --spec (\S+) /.exec(String(s["ExecStart"]))?.[1], "the secrets unit's spec").toBe(spec);
    expect(String(s["ExecStart"])).toMatch(/ --reload api\.service$/);
    expect(s["PrivateNetwork"], "a file source: no network, like the secrets unit").toBe("true");
    expect(u["api-secrets-refresh.timer"]!["Timer"]).toEqual({ OnBootSec: "2h", OnUnitActiveSec: "2h", RandomizedDelaySec: "10m" });
    const agent = units(
      `{ homelab, ... }: { systemd.services = (homelab.mkRefreshUnits { ${args} fromAgent = true; }).services // { api.serviceConfig.ExecStart = "/bin/true"; }; }`,
    )["api-secrets-refresh.service"]!;
    expect(String(agent["Service"]!["ExecStart"])).toMatch(/ refresh --spec \S+ --from-credentials --restart api\.service$/);
    expect(agent["Service"]!["LoadCredential"]).toBe("pw:/run/homelab-secrets/credentials.sock");
    expect(() =>
      units(`{ homelab, ... }: { systemd.services = (homelab.mkRefreshUnits { ${args} fromAgent = true; cache = { }; }).services; }`),
    ).toThrow(/cache is not available with values from the credential agent/);
  });
});
