# homelab.agent: one credential agent per host. Services with
# homelab.secrets.<name>.delivery = "credentials" get every secret through
# LoadCredential=ID:/run/homelab-secrets/credentials.sock on <name>.service itself: the agent
# (socket-activated, signed in once, one batch then a memory cache) renders it, systemd puts it
# in $CREDENTIALS_DIRECTORY/ID for the service's user (DynamicUser= included), and the
# service never holds the token.
{
  config,
  lib,
  pkgs,
  ...
}:

let
  inherit (lib)
    attrNames
    concatLists
    concatStringsSep
    escapeShellArg
    filterAttrs
    length
    literalExpression
    mapAttrs'
    mapAttrsToList
    mkBefore
    mkIf
    mkMerge
    mkOption
    nameValuePair
    optional
    types
    unique
    ;

  hsLib = import ../nix/lib.nix { inherit lib; };
  cfg = config.homelab.agent;
  package = config.homelab.package;
  frontEnd = "${package}/libexec/homelab-secrets/homelab-secrets-agent";

  viaAgent = filterAttrs (_: s: s.enable && s.delivery == "credentials") config.homelab.secrets;
  # delivery = "files" with throughAgent: the <name>-secrets unit asks the agent, then writes.
  filesThroughAgent = filterAttrs (_: s: s.enable && s.delivery == "files" && s.throughAgent && !s.dynamicUser) config.homelab.secrets;
  credentialIds = s: attrNames s.files ++ attrNames s.envFiles ++ attrNames s.templates;

  # refresh.interval set: <name>-secrets-refresh.service loads the same credentials, always fresh.
  credentialsRefreshed = filterAttrs (_: s: s.refresh.interval != null) viaAgent;
  # throughAgent with refresh.interval: the refresh unit loads the -secrets unit's outputs fresh.
  filesRefreshed = filterAttrs (_: s: s.refresh.interval != null) filesThroughAgent;
  refreshUnitOf = name: "${name}-secrets-refresh";

  basePolicy = hsLib.mkAgentPolicy {
    inherit (cfg) source;
    services = viaAgent // mapAttrs' (name: s: nameValuePair "${name}-secrets" s) filesThroughAgent;
  };
  policy = basePolicy // {
    units =
      basePolicy.units
      // mapAttrs' (
        name: _: nameValuePair "${refreshUnitOf name}.service" { refreshes = hsLib.unitNameOf name; }
      ) credentialsRefreshed
      // mapAttrs' (
        name: _: nameValuePair "${refreshUnitOf name}.service" { refreshes = "${name}-secrets.service"; }
      ) filesRefreshed;
  };
  policyProblems = concatLists (
    mapAttrsToList (
      name: s:
      hsLib.specProblems (
        hsLib.mkSpec {
          inherit name;
          inherit (s) files envFiles templates;
          inherit (cfg) source;
          outputDir = "/run/credentials/${hsLib.unitNameOf name}";
        }
      )
    ) (viaAgent // filesThroughAgent)
  );

  # The policy in the store (references only, never values), checked by the agent itself.
  policyFile =
    pkgs.runCommand "homelab-secrets-agent-policy.json"
      {
        json = builtins.toJSON policy;
        passAsFile = [ "json" ];
        nativeBuildInputs = [ package ];
        preferLocalBuild = true;
        allowSubstitutes = false;
      }
      ''
        homelab-secrets agent --check --policy "$jsonPath"
        cp "$jsonPath" "$out"
      '';

  tokenFile =
    if cfg.tokenFile != null then
      cfg.tokenFile
    else if cfg.source.type == "connect" then
      config.homelab.onePassword.connectTokenFile
    else
      config.homelab.onePassword.tokenFile;
  tokenCredential = (hsLib.normalizeSource cfg.source).tokenCredential or null;

  tokenPath = types.nullOr (types.externalPath or (types.addCheck types.str (p: lib.hasPrefix "/" p && !lib.hasPrefix builtins.storeDir p)));

  agentCommand = concatStringsSep " " (
    [
      frontEnd
      "--idle-exit"
      (toString cfg.idleExit)
      "--"
      "${package}/bin/homelab-secrets"
      "agent"
      "--policy"
      "${policyFile}"
      "--ttl"
      (toString cfg.ttl)
      "--deadline"
      (toString cfg.deadline)
    ]
    ++ optional cfg.verbose "--verbose"
    ++ optional (cfg.notFoundTtl != null) "--not-found-ttl ${toString cfg.notFoundTtl}"
    ++ optional cfg.cache.enable "--cache --cache-max-age ${toString cfg.cache.maxAge}"
  );

  # The sealed cache's key: the agent (a DynamicUser) cannot use the host key, so this root
  # oneshot keeps a key credential that decrypts on this host, and systemd hands its plaintext
  # to the agent (LoadCredentialEncrypted=). Missing or undecryptable (another host's, a new host
  # key): 32 new random bytes, on a pipe, sealed with the host key (and a TPM2 when there is one).
  cacheKeyFile = "/var/lib/homelab-secrets/agent-cache-key.cred";
  systemdCreds = "${config.systemd.package}/bin/systemd-creds";
  keyScript = pkgs.writeShellScript "homelab-secrets-agent-key" ''
    set -eu
    cd /var/lib/homelab-secrets
    if ${systemdCreds} decrypt --name=agent-cache-key agent-cache-key.cred - >/dev/null 2>&1; then exit 0; fi
    rm -f agent-cache-key.cred.new
    head -c 32 /dev/urandom | ${systemdCreds} encrypt --with-key=auto --name=agent-cache-key - agent-cache-key.cred.new
    mv -f agent-cache-key.cred.new agent-cache-key.cred
    echo "made a new agent cache key (none, or the old one does not decrypt on this host): the agent cache starts empty"
  '';

  consumerUnit =
    name: s:
    let
      ids = credentialIds s;
    in
    nameValuePair name {
      requires = [ "homelab-secrets-agent.socket" ];
      after = [ "homelab-secrets-agent.socket" ];
      # A changed policy entry restarts the service at `nixos-rebuild switch`.
      restartTriggers = [ (builtins.toJSON policy.units.${hsLib.unitNameOf name}) ];
      serviceConfig = {
        LoadCredential = map (id: "${id}:${hsLib.agentSocket}") ids;
        # systemd starts a Type=simple service even when loading a credential failed, and an
        # agent that closed without answering leaves an empty file: the guard fails the start.
        ExecStartPre = mkBefore [ "${frontEnd} --guard ${concatStringsSep " " (map escapeShellArg ids)}" ];
      };
    };

  # The refresh of a credentials service: its own credential loads are answered fresh (one
  # backend batch), then the CLI compares them byte for byte with what the running service
  # loaded and restarts it only if one differs. The service not running (no credentials
  # directory): skipped, nothing asked.
  refreshUnits =
    name: s:
    let
      ids = credentialIds s;
      service = hsLib.unitNameOf name;
      unit = refreshUnitOf name;
    in
    {
      services.${unit} = {
        description = "homelab-secrets: refresh the credentials of ${service} (restart it if they changed)";
        requires = [ "homelab-secrets-agent.socket" ];
        after = [ "homelab-secrets-agent.socket" ];
        # A switch does not run it; the timer does.
        restartIfChanged = false;
        unitConfig.ConditionPathIsDirectory = "/run/credentials/${service}";
        serviceConfig = hsLib.defaultHardening { network = false; } // {
          Type = "oneshot";
          LoadCredential = map (id: "${id}:${hsLib.agentSocket}") ids;
          ExecStart = concatStringsSep " " (
            [
              "${package}/bin/homelab-secrets"
              "refresh-credentials"
              "--service"
              service
            ]
            ++ optional (s.refresh.onChange == "none") "--no-restart"
            # --id=ID: an ID may begin with "-".
            ++ map (id: escapeShellArg "--id=${id}") ids
          );
          # The agent's batch (its deadline), then systemctl waiting for the service's restart.
          TimeoutStartSec = toString (cfg.deadline + 120);
          # Root, for reading the service's credentials through /proc/1/root (CAP_SYS_PTRACE: PID 1
          # is not dumpable; CAP_DAC_OVERRIDE: under systemd 252 they are its user's 0400 files)
          # and asking systemd for the restart; no network: the agent asks the backend.
          CapabilityBoundingSet = [
            "CAP_DAC_OVERRIDE"
            "CAP_SYS_PTRACE"
          ];
          SyslogIdentifier = unit;
        };
      };
      timers.${unit} = {
        description = "homelab-secrets: refresh the credentials of ${service} every ${s.refresh.interval}";
        wantedBy = [ "timers.target" ];
        timerConfig = {
          OnBootSec = s.refresh.interval;
          OnUnitActiveSec = s.refresh.interval;
          RandomizedDelaySec = s.refresh.randomizedDelay;
        };
      };
    };
in
{
  options.homelab.agent = {
    enable = mkOption {
      type = types.bool;
      default = false;
      description = ''
        Run the credential agent: `homelab-secrets-agent.socket` at
        `/run/homelab-secrets/credentials.sock` (root only) and the socket-activated
        `homelab-secrets-agent.service`, which serves the `delivery = "credentials"` services.
      '';
    };

    source = mkOption {
      type = types.submodule hsLib.sourceModule;
      default = { };
      example = literalExpression ''{ type = "connect"; host = "http://127.0.0.1:8080"; }'';
      description = "Backend the agent resolves references from (the same form as a service's `source`).";
    };

    tokenFile = mkOption {
      type = tokenPath;
      default = null;
      description = ''
        The agent's token (a path outside the Nix store, as a string); default:
        `homelab.onePassword.tokenFile` (`connectTokenFile` for Connect). Only the agent
        loads it (`LoadCredential=`).
      '';
    };

    ttl = mkOption {
      type = types.ints.between 0 86400;
      default = 300;
      description = ''
        Seconds a resolved value is served from the agent's memory; 0: every credential load
        asks the backend (concurrent ones still share one batch).
      '';
    };

    notFoundTtl = mkOption {
      type = types.nullOr (types.ints.between 0 86400);
      default = null;
      description = ''
        Seconds a "not found" answer (a reference 1Password does not have, exit 69) is repeated
        from memory, so a unit with a wrong reference in a restart loop does not read 1Password
        at every attempt (failed reads count against its rate limits too); `null`: the smaller of
        `ttl` and 30; 0: ask every time.
      '';
    };

    idleExit = mkOption {
      type = types.ints.between 0 86400;
      default = 300;
      description = "Seconds without a request after which the agent exits (its socket starts it again); 0: never.";
    };

    deadline = mkOption {
      type = types.ints.between 1 3600;
      default = hsLib.defaultDeadline;
      description = "Seconds one backend batch may take, retries included (as `fetch --deadline`).";
    };

    verbose = mkOption {
      type = types.bool;
      default = false;
      description = "Log every step; units, credential IDs and references are logged, values never.";
    };

    cache = {
      enable = mkOption {
        type = types.bool;
        default = false;
        description = ''
          Keep the agent's last-known-good values sealed on disk (AES-256-GCM under a key
          systemd-creds seals with the host key / TPM2), and serve them when a backend batch
          fails temporarily (exit class 75), so `delivery = "credentials"` services start during
          a backend outage; see docs/cache.md. Values then touch the disk (encrypted).
        '';
      };
      maxAge = mkOption {
        type = types.ints.between 1 (365 * 86400);
        default = hsLib.defaultCacheMaxAge;
        description = "Never serve cached values older than this many seconds (older ones are dropped).";
      };
    };

    serveFiles = mkOption {
      type = types.bool;
      default = false;
      description = ''
        The default of every `homelab.secrets.<service>.throughAgent`: `delivery = "files"`
        services' `<service>-secrets` units get their values from the agent too (one sign-in
        and one batch for the host) and only write them.
      '';
    };
  };

  config = mkMerge [
    {
      assertions =
        [
          {
            assertion = viaAgent == { } || cfg.enable;
            message = "homelab-secrets: ${concatStringsSep ", " (attrNames viaAgent)} use delivery = \"credentials\"; set homelab.agent.enable = true";
          }
          {
            assertion = filesThroughAgent == { } || cfg.enable;
            message = "homelab-secrets: ${concatStringsSep ", " (attrNames filesThroughAgent)} get their files through the agent (throughAgent); set homelab.agent.enable = true";
          }
        ]
        ++ map (message: {
          assertion = false;
          inherit message;
        }) (if cfg.enable then policyProblems else [ ]);
    }

    (mkIf cfg.enable {
      assertions = [
        {
          assertion = cfg.source.type == "file" || tokenFile != null;
          message = "homelab-secrets: the agent has no token for its ${cfg.source.type} source; set homelab.agent.tokenFile or homelab.onePassword.${
            if cfg.source.type == "connect" then "connectTokenFile" else "tokenFile"
          }";
        }
      ];

      warnings = concatLists (
        mapAttrsToList (
          name: s:
          optional (filterAttrs (_: e: e.environmentFile) s.envFiles != { })
            "homelab-secrets (${name}): with delivery = \"credentials\" the env files are $CREDENTIALS_DIRECTORY/<name>, not EnvironmentFile= (systemd reads those before it loads credentials); source them from ExecStart or set environmentFile = false."
        ) viaAgent
      );

      systemd.sockets.homelab-secrets-agent = {
        description = "homelab-secrets credential agent socket";
        wantedBy = [ "sockets.target" ];
        # A failed socket listens no more; every consumer requires it, so the consumer's next
        # start starts it again, however often consumers were started (no start limit).
        unitConfig.StartLimitIntervalSec = 0;
        socketConfig = {
          ListenStream = hsLib.agentSocket;
          SocketUser = "root";
          SocketGroup = "root";
          SocketMode = "0600";
          DirectoryMode = "0755";
          Accept = false;
          # systemd's defaults, stated: 20 agent starts within 2 s, none of which accepts (an
          # agent that cannot start), fail the socket and with it the loads waiting at once.
          TriggerLimitIntervalSec = "2s";
          TriggerLimitBurst = 20;
        };
      };

      systemd.services = mkMerge (
        [
        {
          homelab-secrets-agent = {
            description = "homelab-secrets credential agent";
            requires = [ "homelab-secrets-agent.socket" ] ++ optional cfg.cache.enable "homelab-secrets-agent-key.service";
            after = [
              "homelab-secrets-agent.socket"
              "network-online.target"
            ] ++ optional cfg.cache.enable "homelab-secrets-agent-key.service";
            wants = [ "network-online.target" ];
            # A new policy is read when the agent next starts; a running one keeps its cache.
            restartTriggers = [ policyFile ];
            # Started by its socket only. An agent that cannot start is triggered again at once by
            # the load still waiting; the socket's trigger limit ends that burst. A start limit
            # here would fail the socket for its whole window, fix or not.
            startLimitIntervalSec = 0;
            serviceConfig = hsLib.defaultHardening {
              network = cfg.source.type != "file";
              procNet = hsLib.readsProcNet cfg.source;
            } // {
              Type = "simple";
              # The next connection starts it; no restarts with no one asking.
              Restart = "no";
              ExecStart = agentCommand;
              DynamicUser = true;
              LoadCredential = optional (cfg.source.type != "file" && tokenFile != null) "${tokenCredential}:${toString tokenFile}";
              # It reads no one's files and chowns nothing.
              CapabilityBoundingSet = "";
              # SO_PEERCRED must see the peer's real uid 0 (no PrivateUsers=), and the agent
              # reads the peer's /proc/PID/cgroup (root's processes must stay visible).
              ProtectProc = "default";
              SystemCallFilter = [
                "@system-service"
                "~@privileged"
              ];
            } // lib.optionalAttrs cfg.cache.enable {
              # systemd decrypts the key into the agent's own credential directory; the agent never sees the host key.
              LoadCredentialEncrypted = "agent-cache-key:${cacheKeyFile}";
              StateDirectory = "homelab-secrets-agent";
              StateDirectoryMode = "0700";
            };
          };
        }
        (mkIf cfg.cache.enable {
          homelab-secrets-agent-key = {
            description = "homelab-secrets credential agent: the sealed cache's key";
            before = [ "homelab-secrets-agent.service" ];
            # Runs before every start of the agent (tens of ms): a start limit would fail the agent.
            startLimitIntervalSec = 0;
            serviceConfig = {
              Type = "oneshot";
              UMask = "0077";
              StateDirectory = "homelab-secrets";
              StateDirectoryMode = "0700";
              ExecStartPre = "${systemdCreds} setup";
              ExecStart = keyScript;
              LimitCORE = 0;
              NoNewPrivileges = true;
              PrivateNetwork = true;
              PrivateTmp = true;
              ProtectHome = true;
              ProtectKernelModules = true;
              ProtectKernelLogs = true;
              RestrictAddressFamilies = "AF_UNIX";
            };
          };
        })
        (mapAttrs' consumerUnit viaAgent)
      ]
        ++ mapAttrsToList (n: s: (refreshUnits n s).services) credentialsRefreshed
      );
      systemd.timers = mkMerge (mapAttrsToList (n: s: (refreshUnits n s).timers) credentialsRefreshed);
    })
  ];
}
