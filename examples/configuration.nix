# A complete homelab host using homelab-secrets. Add the module and agenix in your flake
# (see examples/flake.nix):
#
#   modules = [ agenix.nixosModules.default homelab-secrets.nixosModules.default ./configuration.nix ];
#
# One agenix secret (a 1Password service-account token) bootstraps everything else; every
# other secret is fetched from 1Password into /run when the service that needs it starts and
# removed when it stops. References (op://…) are not secrets and live in the Nix store.
{
  config,
  lib,
  homelab, # mkSecretService / serviceConfig / fetchSecretFile, from the homelab-secrets module
  ...
}:

{
  # --- the bootstrap token ---------------------------------------------------------------
  # Service mode: read by root-run secrets units only, through LoadCredential=.
  # agenix decrypts with the host's SSH key (enabling services.openssh sets this for you).
  age.identityPaths = [ "/etc/ssh/ssh_host_ed25519_key" ];
  age.secrets.op-service-account.file = ./secrets/op-service-account.age;
  homelab.onePassword.tokenFile = config.age.secrets.op-service-account.path;

  # --- a static-user service with a template ----------------------------------------------
  # Transmission merges credentialsFile into its settings.json at start.
  services.transmission = {
    enable = true;
    credentialsFile = "/run/transmission-secrets/credentials.json";
  };
  homelab.secrets.transmission = {
    owner = "transmission";
    group = "transmission";
    templates."credentials.json".content = builtins.toJSON {
      rpc-username = "{{ op://Homelab/Transmission/username }}";
      rpc-password = "{{ op://Homelab/Transmission/password }}";
    };
  };

  # --- an env file and a raw file for a root oneshot (restic backups on a timer) ------------
  services.restic.backups.b2 = {
    repository = "s3:s3.eu-central-003.backblazeb2.com/homelab-backups";
    paths = [ "/srv" ];
    passwordFile = "/run/restic-backups-b2-secrets/repository-password";
    environmentFile = "/run/restic-backups-b2-secrets/b2.env";
    timerConfig.OnCalendar = "daily";
  };
  homelab.secrets.restic-backups-b2 = {
    files.repository-password.reference = "op://Homelab/Restic/password";
    envFiles."b2.env" = {
      vars = {
        AWS_ACCESS_KEY_ID = "op://Homelab/Backblaze B2/key id";
        AWS_SECRET_ACCESS_KEY = "op://Homelab/Backblaze B2/application key";
      };
      # the restic module already adds it as EnvironmentFile=
      environmentFile = false;
    };
    # backups run unattended: give a slow 1Password a little longer
    deadline = 90;
  };

  # --- a DynamicUser service ---------------------------------------------------------------
  # The secret is fetched by an ExecStartPre= of the service itself into its own
  # RuntimeDirectory=. Note: such a service can read the token too (LoadCredential= is per
  # unit, not per command); give it a token whose vault holds only what it may see.
  systemd.services.uptime-reporter = {
    description = "Push uptime to the status page";
    wantedBy = [ "multi-user.target" ];
    serviceConfig = {
      DynamicUser = true;
      RuntimeDirectory = "uptime-reporter";
      ExecStart = "/run/current-system/sw/bin/sh -c 'exec curl --fail -sS -H @/run/uptime-reporter/auth-header https://status.example.org/push'";
    };
  };
  homelab.secrets.uptime-reporter = {
    dynamicUser = true;
    templates.auth-header.content = "Authorization: Bearer {{ op://Homelab/Status Page/push token }}";
  };

  # --- the helpers, used directly (what homelab.secrets does for you) -----------------------
  services.grafana = {
    enable = true;
    settings.security = {
      admin_password = "$__file{/run/grafana-secrets/admin-password}";
      secret_key = "$__file{/run/grafana-secrets/secret-key}";
    };
  };
  systemd.services.grafana-secrets = homelab.mkSecretService {
    name = "grafana";
    owner = "grafana";
    group = "grafana";
    files = {
      admin-password = "op://Homelab/Grafana/password";
      secret-key = "op://Homelab/Grafana/secret key";
    };
  };
  systemd.services.grafana = homelab.serviceConfig { name = "grafana"; };

  # --- per-user secrets (the op-secret-manager job) ------------------------------------------
  # Users run `homelab-secrets-user` (SUID/SGID to the homelab-secrets account); it writes
  # their entries to /run/user/<uid>/secrets/<path>. The user-mode token must be 0600 and
  # owned by the service account.
  age.secrets.op-user-token = {
    file = ./secrets/op-user-token.age;
    path = "/etc/homelab-secrets/token";
    owner = "homelab-secrets";
    group = "homelab-secrets";
    mode = "0600";
  };
  users.users.alice = {
    isNormalUser = true;
    group = "users";
  };
  users.users.bob = {
    isNormalUser = true;
    group = "users";
  };
  homelab.userSecrets.entries = [
    {
      user = "alice";
      reference = "op://Homelab/alice-github/token";
      path = "github-token";
      tags = [ "dev" ];
    }
    {
      user = "alice";
      reference = "op://Homelab/alice-ssh/private_key?ssh-format=openssh";
      path = "/home/alice/.ssh/id_homelab";
    }
    {
      user = "bob";
      reference = "op://Homelab/bob-aws/credentials";
      path = "aws-credentials";
      tags = [
        "dev"
        "ops"
      ];
    }
  ];
}
