// The sealed cache's Nix options (homelab.cache, homelab.secrets.<name>.cache) and what they
// put in the secrets unit, evaluated against NixOS's own modules through tests/nix/eval-harness.nix.
import { expect, it } from "vitest";
import { asList, describeNixEval, type EvaluatedUnit as Unit } from "./nix-env.js";

describeNixEval("tests/nix/cache-eval.test.ts", "nix: the sealed cache (homelab.cache, homelab.secrets.<name>.cache)", (run) => {
  const cfg = (body: string) =>
    `{ homelab.onePassword.tokenFile = "/run/agenix/op"; systemd.services.web.serviceConfig.ExecStart = "/bin/true"; systemd.services.app.serviceConfig = { DynamicUser = true; ExecStart = "/bin/true"; }; homelab.secrets.web.files.pw.reference = "op://V/db/password"; ${body} }`;
  const units = (body: string) => run("units", cfg(body)) as Record<string, Unit>;
  const failures = (body: string) => (run("failedAssertions", cfg(body)) as string[]).join("\n");
  const service = (u: Record<string, Unit>) => u["web-secrets.service"]!["Service"]!;
  const ownTmpfiles = (body: string) => (run("tmpfiles", cfg(body)) as string[]).filter((r) => r.includes("homelab-secrets"));

  it("off by default: no cache flags, no state directory, no key setup, no TPM, no marker directory", () => {
    const u = units("");
    const s = service(u);
    expect(String(s["ExecStart"])).not.toMatch(/--cache/);
    expect(s["StateDirectory"]).toBeUndefined();
    expect(s["BindPaths"]).toBeUndefined();
    expect(s["DeviceAllow"]).toBeUndefined();
    expect(asList(s["ExecStartPre"])).toHaveLength(1);
    expect(ownTmpfiles("")).toEqual([]);
  });

  it("per service: the fetch flags, StateDirectory=homelab-secrets 0700, the host key set up outside the sandbox, the TPM in the private /dev", () => {
    const u = units(`homelab.secrets.web.cache = { enable = true; maxAge = 3600; reuse = 30; };`);
    const s = service(u);
    expect(String(s["ExecStart"])).toMatch(/ fetch --spec \S+-web-spec\.json --deadline 45 --cache --cache-max-age 3600 --cache-reuse 30$/);
    expect(s["StateDirectory"]).toBe("homelab-secrets");
    expect(s["StateDirectoryMode"]).toBe("0700");
    const pre = asList(s["ExecStartPre"]);
    expect(pre[0]).toMatch(/^-\+\S+\/bin\/systemctl start --no-block --job-mode=fail web\.service$/);
    expect(pre[1]).toMatch(/^-\+\S+\/bin\/systemd-creds setup$/);
    expect(pre).toHaveLength(2);
    expect(s["PrivateDevices"], "the sandbox keeps its private /dev").toBe("true");
    expect(s["BindPaths"]).toBe("-/dev/tpmrm0");
    expect(s["DeviceAllow"]).toBe("/dev/tpmrm0 rw");
    expect(s["ProtectSystem"]).toBe("strict");
    expect(s["ReadWritePaths"]).toBe("-/run/homelab-secrets/cached");
    expect(ownTmpfiles(`homelab.secrets.web.cache.enable = true;`)).toEqual([
      "d /run/homelab-secrets 0700 root root - -",
      "d /run/homelab-secrets/cached 0700 root root - -",
    ]);
  });

  it("the global homelab.cache is every eligible service's default; a service may still opt out or set its own ages", () => {
    const on = service(units(`homelab.cache = { enable = true; maxAge = 7200; };`));
    expect(String(on["ExecStart"])).toMatch(/--cache --cache-max-age 7200 --cache-reuse 60$/);
    const out = service(units(`homelab.cache.enable = true; homelab.secrets.web.cache.enable = false;`));
    expect(String(out["ExecStart"])).not.toMatch(/--cache/);
    const own = service(units(`homelab.cache.enable = true; homelab.secrets.web.cache.reuse = 0;`));
    expect(String(own["ExecStart"])).toMatch(/--cache --cache-max-age 604800 --cache-reuse 0$/);
  });

  it("the global default skips services that cannot have a cache (dynamicUser) instead of refusing them", () => {
    const dyn = `homelab.secrets.app = { dynamicUser = true; files.k.reference = "op://V/api/key"; };`;
    expect(failures(`homelab.cache.enable = true; ${dyn}`)).toBe("");
    const app = (units(`homelab.cache.enable = true; ${dyn}`)["app.service"]!["Service"]!["ExecStartPre"] as string[] | string) ?? "";
    expect(String(app)).not.toMatch(/--cache/);
  });

  it("refuses a cache for a dynamicUser, throughAgent or delivery = credentials service, each with its reason", () => {
    expect(failures(`homelab.secrets.app = { dynamicUser = true; files.k.reference = "op://V/api/key"; cache.enable = true; };`)).toMatch(
      /homelab-secrets \(app\): cache\.enable is for root-run secrets units that fetch themselves; not with dynamicUser \(the cache and the host key must stay root's\)/,
    );
    const agent = `homelab.agent = { enable = true; source = { type = "connect"; host = "http://127.0.0.1:8080"; }; }; homelab.onePassword.connectTokenFile = "/run/agenix/c";`;
    expect(failures(`${agent} homelab.secrets.web = { throughAgent = true; cache.enable = true; };`)).toMatch(
      /homelab-secrets \(web\): cache\.enable is for root-run secrets units that fetch themselves; not with throughAgent \(set homelab\.agent\.cache\.enable = true: the agent keeps its own sealed cache\)/,
    );
    expect(
      failures(
        `${agent} homelab.secrets.app = { delivery = "credentials"; dynamicUser = true; files.k.reference = "op://V/api/key"; cache.enable = true; };`,
      ),
    ).toMatch(
      /homelab-secrets \(app\): cache\.enable is for root-run secrets units that fetch themselves; not with delivery = "credentials"/,
    );
  });

  it("with serialize as well: one lock directory rule, the lock and the marker directory both writable", () => {
    const s = service(units(`homelab.secrets.web = { serialize = true; cache.enable = true; };`));
    expect(asList(s["ReadWritePaths"])).toEqual(["/run/homelab-secrets", "-/run/homelab-secrets/cached"]);
    expect(ownTmpfiles(`homelab.secrets.web = { serialize = true; cache.enable = true; };`)).toEqual([
      "d /run/homelab-secrets 0700 root root - -",
      "d /run/homelab-secrets/cached 0700 root root - -",
    ]);
  });
});
