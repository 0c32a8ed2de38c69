# The host the systemd-nspawn end-to-end suite reproduces. tests/nix/update-golden.sh evaluates
# it (tests/nix/eval-harness.nix) into tests/golden/units.json, which the e2e suite installs
# into a Debian systemd 252 container.
#
# Everything resolves from the local `file` vault /etc/homelab-secrets/vault.json (the e2e
# suite writes it), except connect-demo (a Connect server on 127.0.0.1:18181) and
# recovery-demo (its own Connect server on 127.0.0.1:18182: connect.test.ts and
# recovery.test.ts run in parallel and the containers share the host's loopback).
# refresh-demo and reload-demo (refresh.test.ts) and cache-demo (cache.test.ts) use 127.0.0.1:18183
# inside their own containers (private network, forwarded).
# Vault fields used: Demo/static/{password,username}, Demo/nasty/n1…n12,
# Demo/dynamic/password, Demo/connect/password, Demo/storm/password,
# Demo/alice/token, Demo/bob/token; Demo/missing does not exist.
{
  lib,
  homelab,
  ...
}:

let
  vault = {
    type = "file";
    path = "/etc/homelab-secrets/vault.json";
  };
  probe = name: "/usr/local/bin/e2e-probe ${name}";
  stormNames = map (i: "storm-${lib.fixedWidthNumber 2 i}") (lib.range 1 20);
in
{
  # The token still reaches every secrets unit (and only those) as a credential, so the suite
  # can check where it is visible, although the file source does not need it.
  homelab.onePassword.tokenFile = "/etc/homelab-secrets/token";
  homelab.onePassword.connectTokenFile = "/etc/homelab-secrets/connect-token";

  users.users.static-demo = {
    isSystemUser = true;
    group = "static-demo";
  };
  users.groups.static-demo = { };
  users.users.connect-demo = {
    isSystemUser = true;
    group = "connect-demo";
  };
  users.groups.connect-demo = { };
  users.users.recovery-demo = {
    isSystemUser = true;
    group = "recovery-demo";
  };
  users.groups.recovery-demo = { };
  users.users.refresh-demo = {
    isSystemUser = true;
    group = "refresh-demo";
  };
  users.groups.refresh-demo = { };
  users.users.cache-demo = {
    isSystemUser = true;
    group = "cache-demo";
  };
  users.groups.cache-demo = { };
  users.users.alice = {
    isNormalUser = true;
    group = "users";
  };
  users.users.bob = {
    isNormalUser = true;
    group = "users";
  };

  # --- the options layer -------------------------------------------------------------
  homelab.secrets = {
    static-demo = {
      source = vault;
      files.password = {
        reference = "op://Demo/static/password";
        mode = "0400";
      };
      envFiles."static.env".vars = lib.listToAttrs (
        map (i: lib.nameValuePair "NASTY_${toString i}" "op://Demo/nasty/n${toString i}") (lib.range 1 12)
      );
      templates."config.ini".content = ''
        [database]
        user = {{ op://Demo/static/username }}
        password = {{ op://Demo/static/password }}
      '';
    };

    # Through the credential agent: LoadCredential= from its socket, DynamicUser=, no token.
    agent-demo = {
      delivery = "credentials";
      dynamicUser = true;
      files.password.reference = "op://Demo/dynamic/password";
      envFiles."app.env" = {
        vars.STATIC_PASSWORD = "op://Demo/static/password";
        environmentFile = false;
      };
      templates."config.ini".content = ''
        user = {{ op://Demo/static/username }}
      '';
    };

    # Refreshed through the agent (agent-refresh.test.ts): its -secrets-refresh unit loads the
    # same credentials fresh and restarts it when one changed.
    agentrefresh-demo = {
      delivery = "credentials";
      dynamicUser = true;
      files.password.reference = "op://Demo/dynamic/password";
      templates."refresh.ini".content = ''
        user = {{ op://Demo/static/username }}
      '';
      refresh.interval = "1h";
    };

    # delivery = "files" through the agent: its -secrets unit gets the values from the agent
    # and only writes them (no token, no sign-in of its own).
    agentfiles-demo = {
      throughAgent = true;
      files.password.reference = "op://Demo/static/password";
      envFiles."agentfiles.env".vars.STATIC_USER = "op://Demo/static/username";
    };

    # throughAgent with refresh (agent-files-refresh.test.ts): its -secrets-refresh unit loads
    # the files' contents fresh from the agent and rewrites them only when they changed.
    agentfilesrefresh-demo = {
      throughAgent = true;
      files.password.reference = "op://Demo/dynamic/password";
      envFiles."refresh.env".vars.STATIC_USER = "op://Demo/static/username";
      refresh.interval = "1h";
    };

    missing-demo = {
      source = vault;
      files.password.reference = "op://Demo/missing/password";
    };

    # A timer's oneshot (like nixpkgs' restic backups): its secrets must be gone when a run ends.
    oneshot-demo = {
      source = vault;
      files.password.reference = "op://Demo/static/password";
    };

    # Connect down at start, up later: the fetch fails with 75 after a short deadline, the
    # secrets unit restarts after RestartSec= and then starts the service (recovery.test.ts).
    recovery-demo = {
      source = {
        type = "connect";
        host = "http://127.0.0.1:18182";
      };
      files.password.reference = "op://Demo/connect/password";
      deadline = 3;
    };

    # Refreshed on a timer from their own Connect server (127.0.0.1:18183, refresh.test.ts):
    # a rotated value is rewritten and the service restarted (or reloaded), nothing else.
    refresh-demo = {
      source = {
        type = "connect";
        host = "http://127.0.0.1:18183";
      };
      files.password.reference = "op://Demo/connect/password";
      envFiles."refresh.env".vars.REFRESH_PASSWORD = "op://Demo/connect/password";
      deadline = 3;
      refresh.interval = "1h";
    };
    # The sealed last-known-good cache (cache.test.ts): its own Connect port (18183), a short
    # deadline, and ages short enough for a test to pass them.
    cache-demo = {
      source = {
        type = "connect";
        host = "http://127.0.0.1:18183";
      };
      files.password.reference = "op://Demo/connect/password";
      envFiles."cache.env".vars.CACHE_PASSWORD = "op://Demo/connect/password";
      deadline = 3;
      cache = {
        enable = true;
        maxAge = 25;
        reuse = 5;
      };
      # refresh.test.ts: a refresh brings a service on cached values back to fresh ones.
      refresh.interval = "1h";
    };
    reload-demo = {
      source = {
        type = "connect";
        host = "http://127.0.0.1:18183";
      };
      files.password.reference = "op://Demo/static/password";
      deadline = 3;
      refresh = {
        interval = "1h";
        onChange = "reload";
        randomizedDelay = "10m";
      };
    };
  }
  // lib.genAttrs stormNames (_: {
    source = vault;
    files.password.reference = "op://Demo/storm/password";
    serialize = true;
  });

  systemd.services = {
    static-demo.serviceConfig = {
      User = "static-demo";
      Group = "static-demo";
      ExecStart = probe "static-demo";
    };

    missing-demo.serviceConfig.ExecStart = probe "missing-demo";

    agentfiles-demo.serviceConfig = {
      User = "static-demo";
      Group = "static-demo";
      ExecStart = probe "agentfiles-demo";
    };

    agentfilesrefresh-demo.serviceConfig = {
      User = "static-demo";
      Group = "static-demo";
      ExecStart = probe "agentfilesrefresh-demo";
    };

    agent-demo.serviceConfig = {
      DynamicUser = true;
      ExecStart = probe "agent-demo";
    };

    agentrefresh-demo.serviceConfig = {
      DynamicUser = true;
      ExecStart = probe "agentrefresh-demo";
    };

    oneshot-demo = {
      restartIfChanged = false;
      serviceConfig = {
        Type = "oneshot";
        # the probe idles like a daemon; a run of this job is its first two seconds
        ExecStart = "/usr/bin/timeout 2 ${probe "oneshot-demo"}";
        SuccessExitStatus = 124;
      };
    };

    recovery-demo.serviceConfig = {
      User = "recovery-demo";
      Group = "recovery-demo";
      ExecStart = probe "recovery-demo";
    };

    cache-demo.serviceConfig = {
      User = "cache-demo";
      Group = "cache-demo";
      ExecStart = probe "cache-demo";
    };

    refresh-demo.serviceConfig = {
      User = "refresh-demo";
      Group = "refresh-demo";
      ExecStart = probe "refresh-demo";
    };

    # Its ExecReload= leaves a mark per run, so a reload can be told from a restart.
    reload-demo.serviceConfig = {
      ExecStart = probe "reload-demo";
      ExecReload = "/bin/sh -c 'echo reloaded >>/run/reload-demo.reloads'";
    };

    # --- the helpers, used directly ----------------------------------------------------
    dynamic-demo = lib.mkMerge [
      (homelab.fetchSecretFile {
        name = "dynamic-demo";
        reference = "op://Demo/dynamic/password";
        file = "password";
        source = vault;
      })
      {
        serviceConfig = {
          DynamicUser = true;
          RuntimeDirectory = "dynamic-demo";
          ExecStart = probe "dynamic-demo";
        };
      }
    ];

    connect-demo-secrets = homelab.mkSecretService {
      name = "connect-demo";
      owner = "connect-demo";
      group = "connect-demo";
      files.password = "op://Demo/connect/password";
      source = {
        type = "connect";
        host = "http://127.0.0.1:18181";
        tokenCredential = "op-connect-token";
      };
    };

    connect-demo = lib.mkMerge [
      (homelab.serviceConfig { name = "connect-demo"; })
      {
        serviceConfig = {
          User = "connect-demo";
          Group = "connect-demo";
          ExecStart = probe "connect-demo";
        };
      }
    ];
  }
  // lib.genAttrs stormNames (name: {
    serviceConfig.ExecStart = probe name;
  });

  # --- the credential agent (serves agent-demo, agentrefresh-demo and agentfiles-demo-secrets)
  homelab.agent = {
    enable = true;
    source = vault;
    # The sealed cache: the module's key unit (writeShellScript) under real systemd (agent-nix.test.ts).
    cache.enable = true;
  };

  # --- per-user secrets through the wrapper ----------------------------------------------
  homelab.userSecrets = {
    source = vault;
    entries = [
      {
        user = "alice";
        reference = "op://Demo/alice/token";
        path = "token";
        tags = [ "dev" ];
      }
      {
        user = "alice";
        reference = "op://Demo/static/password";
        path = "shared/static-password";
      }
      {
        user = "bob";
        reference = "op://Demo/bob/token";
        path = "token";
        tags = [
          "dev"
          "ops"
        ];
      }
    ];
  };
}
