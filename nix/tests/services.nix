# VM test: service mode. A static-user service reads its secret; restart re-fetches; stop
# wipes; a DynamicUser service fetches into its RuntimeDirectory; an unreachable 1Password
# (a Connect source on a port where nothing listens) blocks its service with a clear message.
{
  pkgs,
  self,
  fixtures,
}:

pkgs.testers.runNixOSTest {
  name = "homelab-secrets-services";

  nodes.machine =
    { pkgs, ... }:
    let
      vault = {
        type = "file";
        path = fixtures.vaultPath;
      };
      sleeper = "${pkgs.coreutils}/bin/sleep infinity";
    in
    {
      imports = [ self.nixosModules.default ];

      # Copied (not symlinked) so the test can rotate a value. Readable by all: the DynamicUser
      # service's ExecStartPre= reads it as the dynamic user (test data, not a real vault).
      environment.etc."homelab-secrets/vault.json" = {
        text = builtins.toJSON fixtures.vault;
        mode = "0644";
      };
      environment.etc."homelab-secrets/token" = {
        text = fixtures.fakeToken;
        mode = "0400";
      };
      homelab.onePassword.tokenFile = "/etc/homelab-secrets/token";
      homelab.onePassword.connectTokenFile = "/etc/homelab-secrets/token";

      users.users.app = {
        isSystemUser = true;
        group = "app";
      };
      users.groups.app = { };

      systemd.services.app = {
        wantedBy = [ "multi-user.target" ];
        serviceConfig = {
          User = "app";
          ExecStart = sleeper;
        };
      };
      homelab.secrets.app = {
        source = vault;
        files.password.reference = "op://Demo/static/password";
        envFiles."app.env".vars.APP_PASSWORD = "op://Demo/static/password";
        templates."app.ini".content = ''
          user = {{ op://Demo/static/username }}
          password = {{ op://Demo/static/password }}
        '';
      };

      systemd.services.dyn = {
        wantedBy = [ "multi-user.target" ];
        serviceConfig = {
          DynamicUser = true;
          RuntimeDirectory = "dyn";
          ExecStart = sleeper;
        };
      };
      homelab.secrets.dyn = {
        dynamicUser = true;
        source = vault;
        files.password.reference = "op://Demo/dynamic/password";
      };

      systemd.services.blocked.serviceConfig.ExecStart = sleeper;
      homelab.secrets.blocked = {
        source = {
          type = "connect";
          host = "http://127.0.0.1:9";
        };
        files.password.reference = "op://Demo/static/password";
        deadline = 5;
      };
    };

  testScript = ''
    machine.wait_for_unit("app.service")

    with subtest("the static-user service reads its secret"):
        machine.succeed("test \"$(runuser -u app -- cat /run/app-secrets/password)\" = static-secret-1")
        machine.succeed("test \"$(stat -c '%U:%G %a' /run/app-secrets/password)\" = 'app:app 400'")
        machine.succeed("test \"$(stat -c '%U:%G %a' /run/app-secrets)\" = 'app:app 750'")
        machine.succeed("grep -qx 'password = static-secret-1' /run/app-secrets/app.ini")
        machine.succeed("tr '\\0' '\\n' < /proc/$(systemctl show -P MainPID app.service)/environ | grep -qx APP_PASSWORD=static-secret-1")
        machine.fail("runuser -u nobody -- cat /run/app-secrets/password")
        # the token is a credential of the secrets unit only (kept, root-only, while that
        # RemainAfterExit unit is active), never the service's
        machine.fail("tr '\\0' '\\n' < /proc/$(systemctl show -P MainPID app.service)/environ | grep -q CREDENTIALS_DIRECTORY")
        machine.succeed("test \"$(stat -c '%U %a' /run/credentials/app-secrets.service/op-token)\" = 'root 400'")
        machine.fail("runuser -u app -- cat /run/credentials/app-secrets.service/op-token")

    with subtest("restart re-fetches"):
        machine.succeed("sed -i s/static-secret-1/static-secret-2/ /etc/homelab-secrets/vault.json")
        machine.succeed("systemctl restart app.service")
        machine.wait_for_unit("app.service")
        machine.succeed("test \"$(cat /run/app-secrets/password)\" = static-secret-2")
        machine.succeed("tr '\\0' '\\n' < /proc/$(systemctl show -P MainPID app.service)/environ | grep -qx APP_PASSWORD=static-secret-2")

    with subtest("stop wipes"):
        machine.succeed("systemctl stop app.service")
        # PartOf= stops the secrets unit too; `systemctl stop` may return before its cleanup ends
        machine.wait_until_succeeds("test \"$(systemctl is-active app-secrets.service)\" = inactive")
        machine.wait_until_fails("test -e /run/app-secrets")
        machine.fail("test -e /run/credentials/app-secrets.service")
        machine.succeed("systemctl start app.service")
        machine.succeed("test \"$(cat /run/app-secrets/password)\" = static-secret-2")

    with subtest("DynamicUser service"):
        machine.wait_for_unit("dyn.service")
        uid = machine.succeed("systemctl show -P MainPID dyn.service | xargs -I{} stat -c %u /proc/{}").strip()
        machine.succeed(f"test \"$(stat -c %u /run/dyn/password)\" = {uid}")
        machine.succeed("test \"$(cat /run/dyn/password)\" = dynamic-secret-1")
        machine.succeed("systemctl stop dyn.service")
        machine.fail("test -e /run/dyn/password")

    with subtest("1Password unreachable blocks the service with a clear message"):
        machine.fail("systemctl start blocked.service")
        machine.succeed("test \"$(systemctl show -P ActiveState blocked.service)\" != active")
        machine.fail("test -e /run/blocked-secrets/password")
        status = machine.succeed("systemctl show -P ExecMainStatus blocked-secrets.service").strip()
        assert status == "75", f"expected EX_TEMPFAIL (75), got {status}"
        machine.succeed("journalctl -b -u blocked-secrets.service -o cat | grep -Ei '127\\.0\\.0\\.1:9|unreachable|connection refused'")
        machine.fail("journalctl -b -o cat | grep -F ${fixtures.fakeToken}")
  '';
}
