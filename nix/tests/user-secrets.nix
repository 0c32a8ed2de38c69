# VM test: per-user entries through the SUID/SGID wrapper. Each user gets only their own
# entries, owned by them; nobody but the service account can read the token or the vault.
{
  pkgs,
  self,
  fixtures,
}:

pkgs.testers.runNixOSTest {
  name = "homelab-secrets-user-secrets";

  nodes.machine = {
    imports = [ self.nixosModules.default ];

    environment.etc."homelab-secrets/vault.json" = {
      text = builtins.toJSON fixtures.vault;
      mode = "0640";
      user = "root";
      group = "homelab-secrets";
    };
    environment.etc."homelab-secrets/token" = {
      text = fixtures.fakeToken;
      mode = "0600";
      user = "homelab-secrets";
      group = "homelab-secrets";
    };

    users.users.alice.isNormalUser = true;
    users.users.bob.isNormalUser = true;

    homelab.userSecrets = {
      source = {
        type = "file";
        path = fixtures.vaultPath;
      };
      entries = [
        {
          user = "alice";
          reference = "op://Demo/alice/token";
          path = "token";
          tags = [ "dev" ];
        }
        {
          user = "bob";
          reference = "op://Demo/bob/token";
          path = "token";
        }
      ];
    };
  };

  testScript = ''
    machine.wait_for_unit("multi-user.target")
    for user in ["alice", "bob"]:
        machine.succeed(f"loginctl enable-linger {user}")
        uid = machine.succeed(f"id -u {user}").strip()
        machine.wait_for_unit(f"user@{uid}.service")

    with subtest("the wrapper is SUID/SGID to the service account"):
        machine.succeed("test \"$(stat -c '%U:%G %A' /run/wrappers/bin/homelab-secrets-user)\" = 'homelab-secrets:homelab-secrets -r-s--s--x'")

    with subtest("alice gets her entry, as herself"):
        machine.succeed("su - alice -c homelab-secrets-user")
        uid = machine.succeed("id -u alice").strip()
        machine.succeed(f"test \"$(cat /run/user/{uid}/secrets/token)\" = alice-token-1")
        machine.succeed(f"test \"$(stat -c '%U %a' /run/user/{uid}/secrets/token)\" = 'alice 600'")

    with subtest("bob gets only his"):
        machine.succeed("su - bob -c homelab-secrets-user")
        uid = machine.succeed("id -u bob").strip()
        machine.succeed(f"test \"$(cat /run/user/{uid}/secrets/token)\" = bob-token-1")
        machine.fail("grep -r alice-token-1 /run/user/" + uid)

    with subtest("users cannot read the token, the vault or redirect the mapfile"):
        machine.fail("su - alice -c 'cat /etc/homelab-secrets/token'")
        machine.fail("su - alice -c 'cat /etc/homelab-secrets/vault.json'")
        machine.succeed("su - alice -c 'echo \"alice op://Demo/bob/token stolen\" > /tmp/map'")
        machine.fail("su - alice -c 'homelab-secrets-user --map-file-path /tmp/map'")
        uid = machine.succeed("id -u alice").strip()
        machine.fail(f"test -e /run/user/{uid}/secrets/stolen")

    with subtest("cleanup removes the caller's files"):
        machine.succeed("su - alice -c 'homelab-secrets-user --cleanup'")
        machine.fail(f"test -e /run/user/{uid}/secrets/token")
  '';
}
