// Module evaluation tests: the NixOS module, evaluated against NixOS's own modules through
// tests/nix/eval-harness.nix (inputs: NIXPKGS_LIB or ../shared/nix-eval), must generate the
// units the README describes, as real NixOS renders them, and must refuse bad configurations
// with clear assertion messages. Also guards tests/golden/units.json.
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { evalHarness, findNixInstantiate, findNixosInputs, inCI, removeWritableStore, repoRoot } from "./nix-env.js";

/** The parts of a rendered spec (JSON) these tests read. */
interface SpecJson {
  outputDir?: string;
  owner?: unknown;
  source?: unknown;
  files: Record<string, { ref: string }>;
  envFiles: Record<string, { vars: Record<string, string> }>;
  templates: Record<string, { content: string }>;
}

type Section = Record<string, string | string[]>;
type Unit = Record<string, Section>;
interface Golden {
  storePaths: { package: string; systemd: string };
  files: Record<string, string>;
  units: Record<string, Unit>;
  etc: Record<string, { text?: string; mode: string; user: string; group: string }>;
  tmpfiles: string[];
  wrappers: Record<string, { source: string; owner: string; group: string; setuid: boolean; setgid: boolean }>;
}

const nix = findNixInstantiate();
const found = findNixosInputs();
const why = nix === undefined ? "nix-instantiate not found (apt-get install nix-bin)" : found.why;
const skip = why !== undefined;

const asList = (v: string | string[] | undefined): string[] => (v === undefined ? [] : Array.isArray(v) ? v : [v]);

if (skip && inCI) {
  describe("nix: module evaluation", () => {
    it("has its prerequisites (CI=true)", () => {
      throw new Error(`${why}; CI must run the Nix evaluation tests`);
    });
  });
} else {
  if (skip) console.warn(`\n*** SKIPPED tests/nix/eval.test.ts: ${why} ***\n`);
  describe.skipIf(skip)(skip ? `nix: module evaluation (SKIPPED: ${why})` : "nix: module evaluation against NixOS's own modules", () => {
    const inputs = found.inputs!;
    const run = (attr: string, configuration: string, readWrite = false, withAgenix?: boolean) =>
      evalHarness(nix!, inputs, { attr, configuration, readWrite, ...(withAgenix === undefined ? {} : { withAgenix }) });
    afterAll(removeWritableStore);

    describe("e2e configuration (tests/e2e/configuration.nix)", () => {
      const e2e = "./tests/e2e/configuration.nix";
      let golden: Golden;
      const g = (): Golden => (golden ??= run("golden", e2e, true) as Golden);

      it("passes every assertion without warnings", () => {
        expect(run("failedAssertions", e2e)).toEqual([]);
        expect(run("warnings", e2e)).toEqual([]);
      });

      it("matches the committed tests/golden/units.json (run tests/nix/update-golden.sh)", () => {
        const committed: unknown = JSON.parse(readFileSync(join(repoRoot, "tests/golden/units.json"), "utf8"));
        expect(committed).toEqual(g());
      });

      it("restarts each homelab.secrets service on `nixos-rebuild switch` when its spec changes (restartTriggers)", () => {
        // connect-demo is wired with the helpers directly (mkSecretService + serviceConfig),
        // where restartTriggers are the caller's choice.
        const withSecrets = Object.keys(g().units).filter((u) => u.endsWith("-secrets.service") && u !== "connect-demo-secrets.service");
        expect(withSecrets.length).toBeGreaterThan(20);
        for (const secrets of withSecrets) {
          const service = secrets.replace(/-secrets\.service$/, ".service");
          const spec = String(g().units[secrets]!.Service!.ExecStart).split(" ")[3]!;
          const triggers = g().units[service]!.Unit!["X-Restart-Triggers"];
          expect(triggers, service).toBeDefined();
          // the spec's content (what is fetched), not the path of its build
          expect(JSON.parse(g().files[String(triggers)]!), service).toEqual(JSON.parse(g().files[spec]!));
        }
      });

      it("orders the secrets unit before the service, part of it and required by it", () => {
        const s = g().units["static-demo-secrets.service"]!;
        expect(s.Unit!.Before).toBe("static-demo.service");
        expect(s.Unit!.PartOf).toBe("static-demo.service");
        expect(s.Install!.RequiredBy).toBe("static-demo.service");
        expect(s.Service!.Type).toBe("oneshot");
        expect(s.Service!.RemainAfterExit).toBe("true");
        const app = g().units["static-demo.service"]!;
        expect(app.Unit!.After).toBe("static-demo-secrets.service");
        expect(app.Unit!.Requires).toBe("static-demo-secrets.service");
        expect(app.Service!.ExecStart).toBe("/usr/local/bin/e2e-probe static-demo");
      });

      it("queues the service's start from every run of the secrets unit, so a retry that succeeds brings the service back", () => {
        const golden = g();
        expect(golden.storePaths.systemd).toMatch(/^\/nix\/store\/[0-9a-z]{32}-systemd-/);
        const secretsUnits = Object.keys(golden.units).filter((n) => n.endsWith("-secrets.service"));
        expect(secretsUnits.length).toBeGreaterThanOrEqual(24);
        for (const name of secretsUnits) {
          const service = name.replace(/-secrets\.service$/, ".service");
          const unit = golden.units[name]!;
          // Before the fetch: the queued start waits for this unit (After=) and needs it (Requires=).
          // A unit with the sealed cache also sets up the host key (tests/nix/cache-eval.test.ts).
          const cached = String(unit.Service!.ExecStart).includes(" --cache ");
          expect(asList(unit.Service!.ExecStartPre), name).toEqual([
            `-+${golden.storePaths.systemd}/bin/systemctl start --no-block --job-mode=fail ${service}`,
            ...(cached ? [`-+${golden.storePaths.systemd}/bin/systemd-creds setup`] : []),
          ]);
          // Not after it: systemd re-chowns RuntimeDirectory= to the unit's user before every command.
          expect(unit.Service!.ExecStartPost, name).toBeUndefined();
          expect(unit.Service!.Restart, name).toBe("on-failure");
          expect(unit.Service!.RestartSec, name).toBe("10s");
          expect(unit.Unit!.PartOf, name).toBe(service);
          expect(golden.units[service]!.Unit!.After, service).toBe(name);
          expect(golden.units[service]!.Unit!.Requires, service).toBe(name);
        }
        // DynamicUser services fetch in their own ExecStartPre=: nothing to queue there.
        expect(asList(golden.units["dynamic-demo.service"]!.Service!.ExecStartPre)).toHaveLength(1);
        expect(String(golden.units["dynamic-demo.service"]!.Service!.ExecStartPre)).not.toContain("systemctl");
        // The e2e recovery scenario's unit: its own Connect port and a short deadline.
        expect(String(golden.units["recovery-demo-secrets.service"]!.Service!.ExecStart)).toMatch(/ --deadline 3$/);
      });

      it("loads the token as a credential, never through the environment", () => {
        const golden = g();
        const s = golden.units["static-demo-secrets.service"]!.Service!;
        expect(s.LoadCredential).toBe("op-token:/etc/homelab-secrets/token");
        expect(golden.units["connect-demo-secrets.service"]!.Service!.LoadCredential).toBe(
          "op-connect-token:/etc/homelab-secrets/connect-token",
        );
        for (const [name, unit] of Object.entries(golden.units)) {
          for (const env of asList(unit.Service?.Environment)) expect(env, name).not.toMatch(/token/i);
        }
      });

      it("runs fetch with the spec from the store, a deadline and a start timeout above it", () => {
        const golden = g();
        const s = golden.units["static-demo-secrets.service"]!.Service!;
        const m = String(s.ExecStart).match(
          /^(\/nix\/store\/\S+)\/bin\/homelab-secrets fetch --spec (\/nix\/store\/\S+-static-demo-spec\.json) --deadline (\d+)$/,
        );
        expect(m, String(s.ExecStart)).not.toBeNull();
        expect(m![1]).toBe(golden.storePaths.package);
        expect(golden.storePaths.package).toMatch(/^\/nix\/store\/[0-9a-z]{32}-homelab-secrets-0\.1\.0$/);
        expect(Number(s.TimeoutStartSec)).toBeGreaterThanOrEqual(60);
        expect(Number(s.TimeoutStartSec)).toBeGreaterThan(Number(m![3]));
        expect(s.ExecStop).toBe(`${golden.storePaths.package}/bin/homelab-secrets cleanup --spec ${m![2]}`);
        expect(asList(s.RestartPreventExitStatus)).toEqual(["65", "69", "77", "78"]);
        expect(s.RuntimeDirectory).toBe("static-demo-secrets");
      });

      it("writes a version 1 spec with every output", () => {
        const golden = g();
        const path = Object.keys(golden.files).find((p) => p.endsWith("-static-demo-spec.json"))!;
        const spec = JSON.parse(golden.files[path]!) as SpecJson;
        expect(spec).toMatchObject({
          version: 1,
          name: "static-demo",
          outputDir: "/run/static-demo-secrets",
          owner: "static-demo",
          group: "static-demo",
          dirMode: "0750",
          source: { type: "file", path: "/etc/homelab-secrets/vault.json" },
          files: { password: { ref: "op://Demo/static/password", mode: "0400" } },
        });
        expect(Object.keys(spec.envFiles["static.env"]!.vars)).toHaveLength(12);
        expect(spec.envFiles["static.env"]!.vars.NASTY_3).toBe("op://Demo/nasty/n3");
        expect(spec.templates["config.ini"]!.content).toContain("{{ op://Demo/static/username }}");
        // Every store file a unit mentions is in `files`.
        for (const unit of Object.values(golden.units)) {
          for (const line of Object.values(unit.Service ?? {}).flat()) {
            for (const p of String(line).match(/\/nix\/store\/[0-9a-z]{32}-[^\s]+-spec\.json/g) ?? []) {
              expect(golden.files).toHaveProperty([p]);
            }
          }
        }
      });

      it("hardens the secrets unit (without MemoryDenyWriteExecute, which Node's JIT cannot run under)", () => {
        const golden = g();
        for (const name of ["static-demo-secrets.service", "connect-demo-secrets.service", "storm-07-secrets.service"]) {
          const s = golden.units[name]!.Service!;
          expect(s, name).toMatchObject({
            ProtectSystem: "strict",
            ProtectHome: "true",
            PrivateTmp: "true",
            PrivateDevices: "true",
            NoNewPrivileges: "true",
            SystemCallFilter: "@system-service",
            SystemCallArchitectures: "native",
            RestrictNamespaces: "true",
            LockPersonality: "true",
          });
          expect(asList(s.CapabilityBoundingSet).sort()).toEqual(["CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FOWNER"]);
          expect(s.MemoryDenyWriteExecute).toBeUndefined();
        }
        expect(golden.units["connect-demo-secrets.service"]!.Service!.RestrictAddressFamilies).toEqual(["AF_UNIX", "AF_INET", "AF_INET6"]);
        expect(golden.units["connect-demo-secrets.service"]!.Unit!.After).toBe("network-online.target");
        // the file source needs no network at all
        expect(golden.units["static-demo-secrets.service"]!.Service!.RestrictAddressFamilies).toBe("AF_UNIX");
        expect(golden.units["static-demo-secrets.service"]!.Service!.PrivateNetwork).toBe("true");
      });

      it("never writes EnvironmentFile=- (a broken file would silently drop every variable)", () => {
        const golden = g();
        const envFiles = Object.values(golden.units).flatMap((u) => asList(u.Service?.EnvironmentFile));
        expect(envFiles).toContain("/run/static-demo-secrets/static.env");
        for (const e of envFiles) expect(e.startsWith("-")).toBe(false);
      });

      it("fetches DynamicUser services into their own RuntimeDirectory from ExecStartPre", () => {
        const golden = g();
        const d = golden.units["dynamic-demo.service"]!.Service!;
        expect(d.DynamicUser).toBe("true");
        expect(d.RuntimeDirectory).toBe("dynamic-demo");
        expect(d.LoadCredential).toBe("op-token:/etc/homelab-secrets/token");
        expect(String(d.ExecStartPre)).toMatch(
          /bin\/homelab-secrets fetch --spec \/nix\/store\/\S+-dynamic-demo-runtime-spec\.json --deadline 45$/,
        );
        expect(golden.units["dynamic-demo-secrets.service"]).toBeUndefined();
        const spec = JSON.parse(golden.files[String(d.ExecStartPre).split(" ")[3]!]!) as SpecJson;
        expect(spec.outputDir).toBe("/run/dynamic-demo");
        expect(spec.owner).toBeUndefined();
        expect(spec.files["password"]!.ref).toBe("op://Demo/dynamic/password");
      });

      it("serializes the storm units and gives them the lock directory", () => {
        const golden = g();
        const storms = Object.keys(golden.units).filter((n) => /^storm-\d\d-secrets\.service$/.test(n));
        expect(storms).toHaveLength(20);
        for (const n of storms) {
          expect(String(golden.units[n]!.Service!.ExecStart)).toMatch(/ --serialize$/);
          expect(golden.units[n]!.Service!.ReadWritePaths).toBe("/run/homelab-secrets");
        }
        expect(golden.tmpfiles).toContain("d /run/homelab-secrets 0700 root root - -");
        expect(golden.units["storm-20.service"]!.Service!.ExecStart).toBe("/usr/local/bin/e2e-probe storm-20");
      });

      it("installs the mapfile, config.json and the SUID/SGID wrapper for user mode", () => {
        const golden = g();
        expect(golden.etc["homelab-secrets/mapfile"]).toMatchObject({ mode: "0640", user: "root", group: "homelab-secrets" });
        expect(golden.etc["homelab-secrets/mapfile"]!.text).toContain("alice op://Demo/alice/token token dev\n");
        expect(golden.etc["homelab-secrets/mapfile"]!.text).toContain("bob op://Demo/bob/token token dev,ops\n");
        expect(JSON.parse(golden.etc["homelab-secrets/config.json"]!.text!)).toEqual({
          source: { type: "file", path: "/etc/homelab-secrets/vault.json" },
        });
        expect(golden.wrappers["homelab-secrets-user"]).toMatchObject({
          owner: "homelab-secrets",
          group: "homelab-secrets",
          setuid: true,
          setgid: true,
          source: `${golden.storePaths.package}/libexec/homelab-secrets/homelab-secrets-user`,
        });
      });

      it("creates the wrapper's rate-limit state directory, the service account's alone (0700)", () => {
        expect(g().tmpfiles).toContain("d /var/lib/homelab-secrets-user 0700 homelab-secrets homelab-secrets - -");
      });
    });

    describe("systemd.package", () => {
      it("is the systemd whose systemctl the secrets unit runs", () => {
        const units = run(
          "units",
          `{ ... }: {
            systemd.package = { type = "derivation"; name = "systemd-custom"; outPath = "/nix/store/00000000000000000000000000000000-systemd-custom"; };
            homelab.onePassword.tokenFile = "/run/agenix/op";
            homelab.secrets.app.files.x.reference = "op://V/i/f";
            systemd.services.app.serviceConfig.ExecStart = "/bin/true";
          }`,
        ) as Record<string, Unit>;
        expect(units["app-secrets.service"]!.Service!.ExecStartPre).toBe(
          "-+/nix/store/00000000000000000000000000000000-systemd-custom/bin/systemctl start --no-block --job-mode=fail app.service",
        );
      });
    });

    describe("example configuration (examples/configuration.nix)", () => {
      it("passes every assertion of the real modules (agenix included) without warnings, and wires agenix's token path", () => {
        if (!inputs.agenix) throw new Error(inputs.agenixWhy);
        const ex = "./examples/configuration.nix";
        expect(run("failedAssertions", ex)).toEqual([]);
        expect(run("warnings", ex)).toEqual([]);
        const units = run("units", ex) as Record<string, Unit>;
        const secretUnits = Object.keys(units).filter((n) => n.endsWith("-secrets.service"));
        expect(secretUnits.length).toBeGreaterThanOrEqual(2);
        for (const n of secretUnits) {
          expect(units[n]!.Service!.LoadCredential).toMatch(/^op-(connect-)?token:\/run\/agenix\//);
        }
        // restic (a timer's oneshot, restartIfChanged = false): secrets only for the run
        expect(units["restic-backups-b2-secrets.service"]!.Unit!.StopWhenUnneeded).toBe("true");
        expect(units["transmission-secrets.service"]!.Unit!.StopWhenUnneeded).toBeUndefined();
      });
    });

    // What evaluating against NixOS's own modules showed (each failed before its fix).
    describe("real NixOS", () => {
      const token = `homelab.onePassword.tokenFile = "/run/agenix/op";`;
      const units = (config: string) => run("units", config) as Record<string, Unit>;
      const texts = (config: string) => run("unitTexts", config) as Record<string, string>;
      const evalError = (attr: string, config: string): string => {
        try {
          run(attr, config);
        } catch (e) {
          return (e as Error).message;
        }
        throw new Error("the evaluation succeeded");
      };

      it("runs a DynamicUser service's fetch before its own preStart and ExecStartPre= (mkBefore)", () => {
        const u = units(`{ homelab, lib, ... }: {
          ${token}
          systemd.services.app = {
            preStart = "render-config-from-secret";
            serviceConfig = { DynamicUser = true; ExecStart = "/bin/true"; ExecStartPre = [ "/bin/own-pre" ]; };
          };
          homelab.secrets.app = { dynamicUser = true; files.x.reference = "op://V/i/f"; };
          systemd.services.direct = lib.mkMerge [
            { preStart = "render"; serviceConfig = { DynamicUser = true; ExecStart = "/bin/true"; }; }
            (homelab.fetchSecretFile { name = "direct"; reference = "op://V/i/f"; })
          ];
        }`);
        for (const name of ["app.service", "direct.service"]) {
          const pre = asList(u[name]!.Service!.ExecStartPre);
          expect(pre.length, name).toBeGreaterThanOrEqual(2);
          expect(pre[0], name).toMatch(/\/bin\/homelab-secrets fetch --spec /);
          expect(
            pre.slice(1).some((l) => /-pre-start$/.test(l)),
            name,
          ).toBe(true);
        }
        expect(asList(u["app.service"]!.Service!.ExecStartPre)).toContain("/bin/own-pre");
      });

      it("removes a oneshot consumer's secrets when its run ends (StopWhenUnneeded=), and keeps them for a long-running one", () => {
        const u = units(`{ ... }: {
          ${token}
          systemd.services.job = { restartIfChanged = false; serviceConfig = { Type = "oneshot"; ExecStart = "/bin/true"; }; };
          homelab.secrets.job.files.x.reference = "op://V/i/f";
          systemd.services.kept = { serviceConfig = { Type = "oneshot"; RemainAfterExit = true; ExecStart = "/bin/true"; }; };
          homelab.secrets.kept.files.x.reference = "op://V/i/f";
          systemd.services.app.serviceConfig.ExecStart = "/bin/true";
          homelab.secrets.app.files.x.reference = "op://V/i/f";
        }`);
        expect(u["job-secrets.service"]!.Unit!.StopWhenUnneeded).toBe("true");
        expect(u["kept-secrets.service"]!.Unit!.StopWhenUnneeded).toBeUndefined();
        expect(u["app-secrets.service"]!.Unit!.StopWhenUnneeded).toBeUndefined();
      });

      it("never restarts (or starts) a secrets unit on `nixos-rebuild switch`: X-RestartIfChanged=false", () => {
        const golden = run("golden", "./tests/e2e/configuration.nix", true) as Golden;
        const secretsUnits = Object.keys(golden.units).filter((n) => n.endsWith("-secrets.service"));
        expect(secretsUnits.length).toBeGreaterThan(20);
        for (const n of secretsUnits) expect(golden.units[n]!.Service!["X-RestartIfChanged"], n).toBe("false");
      });

      it("restarts no consumer when only the helper package changes (restart triggers are the spec's content, not its build)", () => {
        const cfg = (version: string) => `{ ... }: {
          ${token}
          homelab.package = { type = "derivation"; name = "homelab-secrets-${version}"; outPath = "/nix/store/${version === "0.1.0" ? "1" : "2"}0000000000000000000000000000000-homelab-secrets-${version}"; };
          systemd.services.app.serviceConfig.ExecStart = "/bin/true";
          homelab.secrets.app.files.x.reference = "op://V/i/f";
        }`;
        const [a, b] = [texts(cfg("0.1.0")), texts(cfg("0.2.0"))];
        expect(a["app-secrets.service"]).not.toBe(b["app-secrets.service"]);
        expect(b["app.service"]).toBe(a["app.service"]);
        expect(a["app.service"]).toMatch(/X-Restart-Triggers=/);
        // ...while a change of what is fetched does restart it
        const changed = texts(cfg("0.1.0").replace("op://V/i/f", "op://V/i/g"));
        expect(changed["app.service"]).not.toBe(a["app.service"]);
      });

      it("warns when homelab.secrets names a service that does not exist (a typo)", () => {
        const warnings = run("warnings", `{ ... }: { ${token} homelab.secrets.gitea.files.x.reference = "op://V/i/f"; }`) as string[];
        expect(warnings.join("\n")).toMatch(/homelab\.secrets\.gitea: systemd\.services\.gitea has no ExecStart=/);
        const fine = run(
          "warnings",
          `{ ... }: { ${token} systemd.services.gitea.script = "exec gitea"; homelab.secrets.gitea.files.x.reference = "op://V/i/f"; }`,
        ) as string[];
        expect(fine).toEqual([]);
      });

      it.each([
        ["homelab.onePassword.tokenFile", `homelab.onePassword.tokenFile = ./package.json;`],
        ["homelab.onePassword.tokenFile", `homelab.onePassword.tokenFile = "/nix/store/00000000000000000000000000000000-op-token";`],
        [
          "homelab.onePassword.connectTokenFile",
          `homelab.onePassword.connectTokenFile = ./package.json; homelab.secrets.app.source = { type = "connect"; host = "http://127.0.0.1:8080"; };`,
        ],
        ["homelab.secrets.app.tokenFile", `homelab.secrets.app.tokenFile = ./package.json;`],
        [
          "homelab.userSecrets.tokenFile",
          `homelab.userSecrets = { tokenFile = "/nix/store/00000000000000000000000000000000-op-token"; entries = [ { user = "alice"; reference = "op://V/i/f"; path = "x"; } ]; };`,
        ],
      ])("refuses a token in the Nix store: %s", (option, setting) => {
        const message = evalError(
          "failedAssertions",
          `{ ... }: { systemd.services.app.serviceConfig.ExecStart = "/bin/true"; homelab.secrets.app.files.x.reference = "op://V/i/f"; ${setting} }`,
        );
        expect(message).toContain(option);
        expect(message).toMatch(/not in the Nix store/);
      });

      it("lets a plain definition override the sandbox, the NixOS way (mkDefault)", () => {
        const u = units(`{ ... }: {
          ${token}
          systemd.services.app.serviceConfig.ExecStart = "/bin/true";
          homelab.secrets.app.files.x.reference = "op://V/i/f";
          systemd.services.app-secrets.serviceConfig = { ProtectHome = "read-only"; LimitCORE = "1M"; };
        }`);
        expect(u["app-secrets.service"]!.Service!.ProtectHome).toBe("read-only");
        expect(u["app-secrets.service"]!.Service!.LimitCORE).toBe("1M");
        expect(u["app-secrets.service"]!.Service!.ProtectSystem).toBe("strict");
      });

      it("passes a Connect source's listenerUser into the spec (the loopback listener the token may go to)", () => {
        const golden = run(
          "golden",
          `{ ... }: {
            homelab.onePassword.connectTokenFile = "/run/agenix/op-connect";
            systemd.services.app.serviceConfig.ExecStart = "/bin/true";
            homelab.secrets.app = {
              source = { type = "connect"; host = "http://127.0.0.1:8080"; listenerUser = "onepassword-connect"; };
              files.x.reference = "op://V/i/f";
            };
          }`,
          true,
        ) as Golden;
        const spec = Object.entries(golden.files).find(([path]) => path.endsWith("-app-spec.json"));
        expect(spec, "the app's spec file").toBeDefined();
        expect((JSON.parse(spec![1]) as SpecJson).source).toMatchObject({
          type: "connect",
          host: "http://127.0.0.1:8080",
          listenerUser: "onepassword-connect",
        });
      });

      it("lets the loopback-listener check read /proc/net only where it runs: ProcSubset=all for a plain-http Connect host", () => {
        const u = units(`{ ... }: {
          homelab.onePassword = { tokenFile = "/run/agenix/op"; connectTokenFile = "/run/agenix/op-connect"; };
          systemd.services = { plain.serviceConfig.ExecStart = "/bin/true"; tls.serviceConfig.ExecStart = "/bin/true"; local.serviceConfig.ExecStart = "/bin/true"; };
          homelab.secrets = {
            plain = { source = { type = "connect"; host = "http://127.0.0.1:8080"; }; files.x.reference = "op://V/i/f"; };
            tls = { source = { type = "connect"; host = "https://connect.example.org"; }; files.x.reference = "op://V/i/f"; };
            local.files.x.reference = "op://V/i/f";
          };
        }`);
        expect(u["plain-secrets.service"]!.Service!.ProcSubset).toBe("all");
        expect(u["tls-secrets.service"]!.Service!.ProcSubset).toBe("pid");
        expect(u["local-secrets.service"]!.Service!.ProcSubset).toBe("pid");
      });

      it("writes no core dump of a secrets unit (LimitCORE=0)", () => {
        const golden = run("golden", "./tests/e2e/configuration.nix", true) as Golden;
        for (const [n, unit] of Object.entries(golden.units).filter(([n]) => n.endsWith("-secrets.service"))) {
          expect(unit.Service!.LimitCORE, n).toBe("0");
        }
      });

      it("links the mapfile and config.json to files outside the store: no store path holds them", () => {
        const cfg = `{ ... }: {
          homelab.userSecrets = { mapfile = "/run/agenix/homelab-mapfile"; configFile = "/run/agenix/homelab-config.json"; };
        }`;
        expect(run("failedAssertions", cfg)).toEqual([]);
        const etc = run("etc", cfg) as Golden["etc"] & Record<string, { source: string }>;
        // etc.nix's own result: `source` is what /etc/static links to (a store path for `text`)
        expect(etc["homelab-secrets/mapfile"]).toMatchObject({ source: "/run/agenix/homelab-mapfile", mode: "symlink" });
        expect(etc["homelab-secrets/config.json"]).toMatchObject({ source: "/run/agenix/homelab-config.json", mode: "symlink" });
        for (const [n, e] of Object.entries(etc)) {
          expect(e.text, n).toBeUndefined();
          expect(e.source, n).not.toMatch(/^\/nix\/store\//);
        }
        expect(evalError("etc", `{ ... }: { homelab.userSecrets.mapfile = ./package.json; }`)).toMatch(
          /homelab\.userSecrets\.mapfile[\s\S]*not in the Nix store/,
        );
        const both = run(
          "failedAssertions",
          `{ ... }: { homelab.userSecrets = { mapfile = "/run/m"; entries = [ { user = "alice"; reference = "op://V/i/f"; path = "x"; } ]; }; }`,
        ) as string[];
        expect(both.join("\n")).toMatch(/either mapfile .* or entries/);
      });

      it("accepts a bare service name in mkSecretService (real NixOS refuses `Before=app`)", () => {
        const u = units(`{ homelab, ... }: {
          ${token}
          systemd.services.app.serviceConfig.ExecStart = "/bin/true";
          systemd.services.app-secrets = homelab.mkSecretService { name = "app"; service = "app"; files.x = "op://V/i/f"; };
        }`);
        expect(u["app-secrets.service"]!.Unit!.Before).toBe("app.service");
        expect(u["app-secrets.service"]!.Unit!.PartOf).toBe("app.service");
        expect(String(u["app-secrets.service"]!.Service!.ExecStartPre)).toMatch(/ app\.service$/);
      });
    });

    describe("assertions", () => {
      const cfg = (body: string, token = `homelab.onePassword.tokenFile = "/run/agenix/op";`) =>
        `{ ${token} systemd.services.app.serviceConfig.ExecStart = "/bin/true"; ${body} }`;
      const failures = (config: string) => run("failedAssertions", config) as string[];

      const cases: Array<[string, string, RegExp]> = [
        ["a bad reference", `homelab.secrets.app.files.x.reference = "op://Vault/item";`, /invalid secret reference "op:\/\/Vault\/item"/],
        ["a bad query", `homelab.secrets.app.files.x.reference = "op://V/i/f?attribute=password";`, /invalid secret reference/],
        [
          "a bad reference in a template",
          `homelab.secrets.app.templates.t.content = "a={{ op://V/i }}";`,
          /invalid secret reference "op:\/\/V\/i"/,
        ],
        ["a bad reference in an env file", `homelab.secrets.app.envFiles."e.env".vars.A = "vault/item/field";`, /invalid secret reference/],
        [
          "a world-readable mode",
          `homelab.secrets.app.files.x = { reference = "op://V/i/f"; mode = "0644"; };`,
          /output "x" has mode "0644"/,
        ],
        ["a mode that is not octal", `homelab.secrets.app.files.x = { reference = "op://V/i/f"; mode = "rw"; };`, /has mode "rw"/],
        ["a bad dirMode", `homelab.secrets.app = { files.x.reference = "op://V/i/f"; dirMode = "75x"; };`, /dirMode "75x"/],
        [
          "duplicate outputs",
          `homelab.secrets.app = { files.x.reference = "op://V/i/f"; templates.x.content = "{{ op://V/i/g }}"; };`,
          /duplicate output "x"/,
        ],
        [
          "two services sharing an output dir",
          `homelab.secrets.app = { files.x.reference = "op://V/i/f"; outputDir = "/run/shared"; }; homelab.secrets.other = { files.y.reference = "op://V/i/f"; outputDir = "/run/shared"; };`,
          /same outputDir \/run\/shared/,
        ],
        ["an output name with a slash", `homelab.secrets.app.files."../x".reference = "op://V/i/f";`, /must be a plain file name/],
        ["a bad variable name", `homelab.secrets.app.envFiles."e.env".vars."1X" = "op://V/i/f";`, /variable name "1X"/],
        ["a template without references", `homelab.secrets.app.templates.t.content = "static";`, /contains no/],
        [
          "a connect source without host",
          `homelab.secrets.app = { files.x.reference = "op://V/i/f"; source.type = "connect"; tokenFile = "/t"; };`,
          /needs host/,
        ],
        [
          "a DynamicUser service not declared dynamic",
          `homelab.secrets.app.files.x.reference = "op://V/i/f"; systemd.services.app.serviceConfig.DynamicUser = true;`,
          /set homelab\.secrets\.app\.dynamicUser = true/,
        ],
        [
          "a bad user-secrets reference",
          `homelab.userSecrets.entries = [ { user = "alice"; reference = "op://V/my item/f"; path = "x"; } ];`,
          /mapfile references cannot contain spaces/,
        ],
        [
          "a user-secrets path with ..",
          `homelab.userSecrets.entries = [ { user = "alice"; reference = "op://V/i/f"; path = "../x"; } ];`,
          /must not contain \.\. components/,
        ],
        [
          "a user token with the wrong owner",
          `homelab.userSecrets.entries = [ { user = "alice"; reference = "op://V/i/f"; path = "x"; } ]; age.secrets.t = { file = /dev/null; path = "/etc/homelab-secrets/token"; mode = "0400"; };`,
          /must be owner = "homelab-secrets", mode = "0600"/,
        ],
      ];

      it.each(cases)("fires on %s", (_name, body, message) => {
        const messages = failures(cfg(body));
        expect(
          messages.some((m) => message.test(m)),
          messages.join("\n"),
        ).toBe(true);
      });

      it("fires when no token is configured", () => {
        const messages = failures(cfg(`homelab.secrets.app.files.x.reference = "op://V/i/f";`, ""));
        expect(messages.join("\n")).toMatch(/no token configured for the onepassword source; set homelab\.onePassword\.tokenFile/);
        const connect = failures(
          cfg(
            `homelab.secrets.app = { files.x.reference = "op://V/i/f"; source = { type = "connect"; host = "http://127.0.0.1:8080"; }; };`,
          ),
        );
        expect(connect.join("\n")).toMatch(/connectTokenFile/);
      });

      it("accepts a good configuration (file source needs no token)", () => {
        expect(
          failures(
            cfg(`homelab.secrets.app = { files.x.reference = "op://V/i/f"; source = { type = "file"; path = "/etc/v.json"; }; };`, ""),
          ),
        ).toEqual([]);
        expect(
          failures(
            cfg(
              `homelab.secrets.app = { files."a-b".reference = "op://My Vault/Some Item/sec tion/field"; files.otp = { reference = "op://V/i/f?attribute=totp"; mode = "440"; }; };`,
            ),
          ),
        ).toEqual([]);
      });
    });
  });
}
