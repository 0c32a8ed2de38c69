# homelab.secrets.<service>: 1Password secrets fetched into /run for one systemd service.
{
  config,
  lib,
  pkgs,
  ...
}:

let
  inherit (lib)
    attrNames
    attrValues
    concatLists
    concatMap
    filter
    filterAttrs
    length
    literalExpression
    mapAttrs'
    mapAttrsToList
    mkDefault
    mkIf
    mkMerge
    mkOption
    nameValuePair
    optional
    optionalAttrs
    types
    unique
    ;

  cfg = config.homelab;
  hsLib = import ../nix/lib.nix { inherit lib; };

  # A token must never be a store path (world-readable): a path literal in a flake would be
  # copied there. Like sops-nix's pathNotInStore.
  tokenPath = types.nullOr (types.externalPath or (types.addCheck types.str (p: lib.hasPrefix "/" p && !lib.hasPrefix builtins.storeDir p)));

  helpers = hsLib.mkHelpers {
    inherit pkgs;
    inherit (cfg) package;
    inherit (cfg.onePassword) tokenFile connectTokenFile;
    # Its systemctl: every secrets unit queues its service's start (recovery after a failed fetch).
    systemd = config.systemd.package;
  };

  modeOption =
    default:
    mkOption {
      type = types.str;
      inherit default;
      example = "0440";
      description = ''
        Octal file mode. Group write and any access for others are refused at evaluation time.
      '';
    };

  inherit (hsLib) sourceModule;

  serviceModule =
    { name, config, ... }:
    {
      options = {
        enable = mkOption {
          type = types.bool;
          default = true;
          description = "Whether to fetch secrets for the service `${name}`.";
        };

        files = mkOption {
          default = { };
          example = literalExpression ''{ "rpc-password" = { reference = "op://Homelab/Transmission/password"; }; }'';
          description = "Raw files: the exact bytes of one field each (no newline added).";
          type = types.attrsOf (
            types.submodule {
              options = {
                reference = mkOption {
                  type = types.str;
                  example = "op://Homelab/Transmission/password";
                  description = "Secret reference `op://vault/item/[section/]field[?attribute=otp]`.";
                };
                mode = modeOption "0400";
              };
            }
          );
        };

        envFiles = mkOption {
          default = { };
          example = literalExpression ''{ "app.env" = { vars.DB_PASSWORD = "op://Homelab/Postgres/password"; }; }'';
          description = ''
            Environment files (`KEY="value"` lines, quoted so that systemd, dash and bash read
            the exact value back).
          '';
          type = types.attrsOf (
            types.submodule {
              options = {
                vars = mkOption {
                  type = types.attrsOf types.str;
                  example = {
                    DB_PASSWORD = "op://Homelab/Postgres/password";
                  };
                  description = "Variable name to secret reference.";
                };
                mode = modeOption "0400";
                environmentFile = mkOption {
                  type = types.bool;
                  default = true;
                  description = ''
                    Add the file to the service's `EnvironmentFile=` (never with a `-` prefix:
                    a missing file must fail the start, not start the service without its
                    secrets). Ignored for `dynamicUser` services, where systemd would read the
                    file before `ExecStartPre=` has written it.
                  '';
                };
              };
            }
          );
        };

        templates = mkOption {
          default = { };
          example = literalExpression ''{ "settings.json".content = '''{"rpc-password": "{{ op://Homelab/Transmission/password }}"}'''; }'';
          description = "Files rendered from a template with `{{ op://… }}` placeholders (`op inject` syntax).";
          type = types.attrsOf (
            types.submodule {
              options = {
                content = mkOption {
                  type = types.lines;
                  description = "Template text; references are stored in the Nix store, values never are.";
                };
                mode = modeOption "0400";
              };
            }
          );
        };

        owner = mkOption {
          type = types.nullOr types.str;
          default = null;
          example = "transmission";
          description = "Owner of the files. Default: the service's `User=`, else root.";
        };

        group = mkOption {
          type = types.nullOr types.str;
          default = null;
          example = "transmission";
          description = "Group of the files. Default: the service's `Group=`, else the owner's primary group.";
        };

        dirMode = modeOption "0750";

        outputDir = mkOption {
          type = types.nullOr types.str;
          default = null;
          example = "/run/transmission-secrets";
          description = ''
            Directory the files are written to. Default: `/run/<service>-secrets` (the secrets
            unit's `RuntimeDirectory=`, removed when the service stops), or
            `/run/<runtimeDirectory>` for `dynamicUser` services.
          '';
        };

        dynamicUser = mkOption {
          type = types.bool;
          default = false;
          description = ''
            The service runs with `DynamicUser=yes`: fetch from an `ExecStartPre=` of the
            service itself into its own `RuntimeDirectory=` instead of a separate root unit.
            The token is then loaded into the service, so its main process can read it too.
          '';
        };

        runtimeDirectory = mkOption {
          type = types.str;
          default = name;
          description = "`RuntimeDirectory=` of a `dynamicUser` service.";
        };

        delivery = mkOption {
          type = types.enum [
            "files"
            "credentials"
          ];
          default = "files";
          description = ''
            `files`: a `<service>-secrets` unit writes them to `/run/<service>-secrets` (for
            `dynamicUser`, the service fetches them itself, with the token). `credentials`: the
            credential agent (`homelab.agent`) serves each files/envFiles/templates entry as
            `LoadCredential=<name>:/run/homelab-secrets/credentials.sock` of the service itself,
            read from `$CREDENTIALS_DIRECTORY/<name>`: no token in the service, `DynamicUser=`
            included; `source`, `tokenFile`, `owner`, `group`, modes and `outputDir` are then
            the agent's business or unused.
          '';
        };

        throughAgent = mkOption {
          type = types.bool;
          default = cfg.agent.serveFiles or false;
          defaultText = literalExpression "config.homelab.agent.serveFiles";
          description = ''
            With `delivery = "files"`: the `<service>-secrets` unit gets the values from the
            credential agent (`homelab.agent`; one sign-in and one batch for the host) and only
            writes them, instead of signing in itself. Not for `dynamicUser` services (use
            `delivery = "credentials"` there).
          '';
        };

        source = mkOption {
          type = types.submodule sourceModule;
          default = { };
          example = literalExpression ''{ type = "connect"; host = "http://127.0.0.1:8080"; }'';
          description = "Backend that resolves the references.";
        };

        tokenFile = mkOption {
          type = tokenPath;
          default = null;
          description = ''
            Token for this service only (an absolute path outside the Nix store, as a string); default: `homelab.onePassword.tokenFile`
            (`connectTokenFile` for Connect). Loaded with `LoadCredential=`, never an
            environment variable.
          '';
        };

        deadline = mkOption {
          type = types.ints.between 1 3600;
          default = hsLib.defaultDeadline;
          description = ''
            Seconds the helper may spend (`--deadline`), retries included.
            `TimeoutStartSec=` is set above it.
          '';
        };

        serialize = mkOption {
          type = types.bool;
          default = false;
          description = "Let only one fetch run at a time on this host (`--serialize`).";
        };

        verbose = mkOption {
          type = types.bool;
          default = false;
          description = "Log every step (`--verbose`); references are logged, values never.";
        };

        serviceConfig = mkOption {
          type = types.attrsOf types.anything;
          default = { };
          example = {
            Nice = 10;
          };
          description = "Extra `[Service]` settings for the `<service>-secrets` unit.";
        };

        refresh = {
          interval = mkOption {
            type = types.nullOr types.str;
            default = null;
            example = "1h";
            description = ''
              Fetch the secrets of the running service again every `interval` (a systemd time
              span) and, only when a file changed, rewrite them and restart or reload the
              service (`onChange`): a `<service>-secrets-refresh.timer` and `.service`. `null`
              (the default): no refresh; the secrets change only when the service restarts.
              For `delivery = "files"` without `dynamicUser` (with `throughAgent`, the refresh
              unit loads the files' contents fresh from the agent, no token and no network), and
              for `delivery = "credentials"` (the refresh unit loads the credentials fresh from
              the agent and restarts the service if one differs; `onChange = "reload"` is refused
              there). Not for `dynamicUser` with `delivery = "files"`.
            '';
          };
          onChange = mkOption {
            type = types.enum [
              "restart"
              "reload"
              "none"
            ];
            default = "restart";
            description = ''
              What a refresh that changed a file does to the service: `restart`
              (`systemctl try-restart`), `reload` (`systemctl try-reload-or-restart`: its
              `ExecReload=`) or `none` (only rewrite the files, for services that re-read them).
              Only the service restarts, never its `<service>-secrets` unit (which would fetch
              a second time).
            '';
          };
          randomizedDelay = mkOption {
            type = types.str;
            default = "5m";
            example = "15m";
            description = ''
              `RandomizedDelaySec=` of the timer: each run is delayed by a random time up to
              this, so that many hosts (or services) sharing one token do not ask 1Password at
              the same moment.
            '';
          };
        };

        cache = {
          enable = mkOption {
            type = types.bool;
            default = cfg.cache.enable && !config.dynamicUser && !config.throughAgent && config.delivery == "files";
            defaultText = literalExpression ''config.homelab.cache.enable && !dynamicUser && !throughAgent && delivery == "files"'';
            description = ''
              Keep the last values fetched for this service sealed with `systemd-creds` (host
              key, and the TPM2 when there is one) in `/var/lib/homelab-secrets`, and start the
              service from them when the backend fails temporarily (exit 75) at a later start,
              for example a reboot while 1Password is unreachable. Ciphertext then lives on
              disk; see docs/cache.md. Not for `dynamicUser`, `throughAgent` or
              `delivery = "credentials"` services.
            '';
          };
          maxAge = mkOption {
            type = types.ints.between 0 315360000;
            default = cfg.cache.maxAge;
            defaultText = literalExpression "config.homelab.cache.maxAge";
            description = "Never start from cached values older than this many seconds (older ones are removed).";
          };
          reuse = mkOption {
            type = types.ints.between 0 86400;
            default = cfg.cache.reuse;
            defaultText = literalExpression "config.homelab.cache.reuse";
            description = ''
              A start within this many seconds of the last fresh fetch uses the cached values
              without asking the backend (a restart loop must not burn rate limits); 0: always ask.
            '';
          };
        };
      };
    };

  enabled = filterAttrs (_: s: s.enable) cfg.secrets;
  # delivery = "credentials" services are modules/agent.nix's.
  fileDelivered = filterAttrs (_: s: s.delivery == "files") enabled;

  svcConfigOf = name: config.systemd.services.${name}.serviceConfig or { };

  ownerOf =
    name: s:
    if s.owner != null then
      s.owner
    else
      let
        u = (svcConfigOf name).User or null;
      in
      if u != null then u else "root";

  groupOf =
    name: s:
    let
      owner = ownerOf name s;
      g = (svcConfigOf name).Group or null;
    in
    if s.group != null then
      s.group
    else if g != null then
      g
    else if owner == "root" then
      "root"
    else
      let
        ug = config.users.users.${owner}.group or "";
      in
      if ug != "" then ug else owner;

  outputDirOf =
    name: s:
    if s.outputDir != null then
      s.outputDir
    else if s.dynamicUser then
      "/run/${s.runtimeDirectory}"
    else
      "/run/${name}-secrets";

  truthy = v: builtins.elem v [
    true
    "yes"
    "true"
    "on"
    "1"
  ];

  # A run that ends (a timer's oneshot): nothing keeps the secrets unit needed afterwards.
  runEnds =
    name:
    let
      c = svcConfigOf name;
    in
    (c.Type or "") == "oneshot" && !truthy (c.RemainAfterExit or false);

  wiredEnvFiles = s: attrNames (filterAttrs (_: e: e.environmentFile) s.envFiles);

  argsOf = name: s: {
    inherit name;
    inherit (s)
      files
      envFiles
      templates
      dirMode
      deadline
      serialize
      verbose
      tokenFile
      ;
    source = s.source;
    # Refused by an assertion with throughAgent; not passed on, so that message is what shows.
    cache = if s.cache.enable && !s.throughAgent then { inherit (s.cache) maxAge reuse; } else null;
    owner = ownerOf name s;
    group = groupOf name s;
    outputDir = outputDirOf name s;
  };

  specOf =
    name: s:
    let
      a = argsOf name s;
    in
    if s.dynamicUser then
      hsLib.mkSpec (
        removeAttrs a [
          "owner"
          "group"
          "dirMode"
        ]
        // {
          name = "${name}-runtime";
        }
      )
    else
      hsLib.mkSpec a;

  tokenConfigured =
    s:
    s.source.type == "file"
    || s.tokenFile != null
    || (
      if s.source.type == "connect" then
        cfg.onePassword.connectTokenFile != null
      else
        cfg.onePassword.tokenFile != null
    );

  unitsFor =
    name: s:
    let
      a = argsOf name s;
    in
    if s.dynamicUser then
      {
        ${name} = mkMerge [
          (helpers.fetchSecretFile (
            a
            // {
              inherit (s) runtimeDirectory;
            }
          ))
          { environment.HOMELAB_SECRETS_DIR = a.outputDir; }
        ];
      }
    else
      {
        "${name}-secrets" = helpers.mkSecretService (
          a
          // {
            inherit (s) serviceConfig;
            stopWhenUnneeded = runEnds name;
            fromAgent = s.throughAgent;
          }
        );
        ${name} = mkMerge [
          (helpers.serviceConfig {
            inherit name;
            inherit (a) outputDir;
            envFiles = wiredEnvFiles s;
          })
          {
            # When the secrets it gets change, `nixos-rebuild switch` restarts the service
            # (and, through PartOf=, its secrets unit) instead of swapping files under it. The
            # spec's content, not its build: a new helper package alone restarts nothing.
            restartTriggers = [ (builtins.toJSON (specOf name s)) ];
          }
        ];
      };

  # Services with a refresh timer (the assertions refuse it where it cannot work yet).
  refreshed = filterAttrs (_: s: s.refresh.interval != null) enabled;

  refreshUnitsFor =
    name: s:
    helpers.mkRefreshUnits (
      argsOf name s
      // {
        inherit (s.refresh) interval onChange randomizedDelay;
        fromAgent = s.throughAgent;
      }
    );

  refreshable = filterAttrs (_: s: s.delivery == "files" && !s.dynamicUser) refreshed;
  allOutputDirs = mapAttrsToList outputDirOf fileDelivered;
in
{
  options.homelab = {
    cache = {
      enable = mkOption {
        type = types.bool;
        default = false;
        description = ''
          The default of every `homelab.secrets.<service>.cache.enable` that can have a cache
          (root-run secrets units: not `dynamicUser`, `throughAgent` or `delivery = "credentials"`).
        '';
      };
      maxAge = mkOption {
        type = types.ints.between 0 315360000;
        default = hsLib.defaultCacheMaxAge;
        description = "The default of every `homelab.secrets.<service>.cache.maxAge` (seconds; a week).";
      };
      reuse = mkOption {
        type = types.ints.between 0 86400;
        default = hsLib.defaultCacheReuse;
        description = "The default of every `homelab.secrets.<service>.cache.reuse` (seconds).";
      };
    };

    package = mkOption {
      type = types.package;
      default = pkgs.homelab-secrets or (pkgs.callPackage ../nix/package.nix { });
      defaultText = literalExpression "pkgs.homelab-secrets";
      description = "The homelab-secrets package (CLI `homelab-secrets` and the per-user wrapper).";
    };

    onePassword = {
      tokenFile = mkOption {
        type = tokenPath;
        default = null;
        example = literalExpression "config.age.secrets.op-service-account.path";
        description = ''
          File holding the 1Password service-account token (for example an agenix secret,
          `root:root 0400`). Every secrets unit loads it with `LoadCredential=op-token:…`;
          it never enters an environment variable or the Nix store.
        '';
      };
      connectTokenFile = mkOption {
        type = tokenPath;
        default = null;
        example = literalExpression "config.age.secrets.op-connect-token.path";
        description = "Token for services whose source is a 1Password Connect server (`LoadCredential=op-connect-token:…`).";
      };
    };

    secrets = mkOption {
      type = types.attrsOf (types.submodule serviceModule);
      default = { };
      example = literalExpression ''
        {
          transmission = {
            files."rpc-password".reference = "op://Homelab/Transmission/password";
            envFiles."transmission.env".vars.RPC_PASSWORD = "op://Homelab/Transmission/password";
          };
        }
      '';
      description = ''
        Secrets per systemd service. For each `<service>`, a `<service>-secrets` oneshot
        fetches them into `/run/<service>-secrets` before the service starts (again on every
        restart) and removes them when the service stops.
      '';
    };
  };

  config = mkMerge [
    { _module.args.homelab = helpers; }

    (mkIf (enabled != { }) {
      assertions =
        concatLists (
          mapAttrsToList (
            name: s:
            map (message: {
              assertion = false;
              inherit message;
            }) (hsLib.specProblems (specOf name s))
            ++ [
              {
                assertion = s.delivery == "credentials" || s.throughAgent || tokenConfigured s;
                message = "homelab-secrets (${name}): no token configured for the ${s.source.type} source; set homelab.onePassword.${
                  if s.source.type == "connect" then "connectTokenFile" else "tokenFile"
                } (e.g. config.age.secrets.<x>.path) or homelab.secrets.${name}.tokenFile";
              }
              {
                assertion = !(s.throughAgent && s.dynamicUser && s.delivery == "files");
                message = "homelab-secrets (${name}): throughAgent is for root-run secrets units; a dynamicUser service gets the agent's values with delivery = \"credentials\"";
              }
              {
                assertion = !(s.cache.enable && (s.dynamicUser || s.throughAgent || s.delivery == "credentials"));
                message = "homelab-secrets (${name}): cache.enable is for root-run secrets units that fetch themselves; not with ${
                  if s.delivery == "credentials" then
                    "delivery = \"credentials\" (set homelab.agent.cache.enable = true: the agent keeps its own sealed cache)"
                  else if s.throughAgent then
                    "throughAgent (set homelab.agent.cache.enable = true: the agent keeps its own sealed cache)"
                  else
                    "dynamicUser (the cache and the host key must stay root's)"
                }";
              }
              {
                assertion = hsLib.isValidUnitName name;
                message = "homelab-secrets: \"${name}\" is not a valid systemd unit name";
              }
              {
                assertion = s.dynamicUser || !((svcConfigOf name).DynamicUser or false);
                message = "homelab-secrets (${name}): the service has DynamicUser=yes; set homelab.secrets.${name}.dynamicUser = true";
              }
              {
                assertion = !s.dynamicUser || ((svcConfigOf name).DynamicUser or false);
                message = "homelab-secrets (${name}): dynamicUser = true, but the service does not set DynamicUser=yes";
              }
              {
                assertion = !s.dynamicUser || s.outputDir == null || s.outputDir == "/run/${s.runtimeDirectory}";
                message = "homelab-secrets (${name}): a dynamicUser service fetches into its own RuntimeDirectory=; leave outputDir unset";
              }
              {
                assertion = s.refresh.interval == null || s.delivery == "credentials" || !s.dynamicUser;
                message = "homelab-secrets (${name}): refresh is only available for delivery = \"files\" without dynamicUser, and for delivery = \"credentials\", for now; unset homelab.secrets.${name}.refresh.interval";
              }
              {
                # systemd loads credentials when a service starts; a reload keeps the old ones.
                assertion = s.refresh.interval == null || s.delivery != "credentials" || s.refresh.onChange != "reload";
                message = "homelab-secrets (${name}): refresh.onChange = \"reload\" cannot work with delivery = \"credentials\": systemd loads a service's credentials only when it starts, and a reload keeps the old ones; use \"restart\" (or \"none\")";
              }
            ]
          ) enabled
        )
        ++ map (d: {
          assertion = false;
          message = "homelab-secrets: two services write to the same outputDir ${d}";
        }) (unique (filter (d: length (filter (x: x == d) allOutputDirs) > 1) allOutputDirs));

      warnings = concatMap (
        name:
        let
          s = enabled.${name};
        in
        optional (!((svcConfigOf name) ? ExecStart))
          "homelab.secrets.${name}: systemd.services.${name} has no ExecStart= (a typo, or its service not enabled?); the module would create a ${name}.service that cannot start."
        ++ optional (s.delivery == "files" && s.dynamicUser && filterAttrs (_: e: e.environmentFile) s.envFiles != { })
          "homelab-secrets (${name}): env files of a dynamicUser service are written to /run/${s.runtimeDirectory} but not loaded as EnvironmentFile= (systemd reads those before ExecStartPre= runs); source them from ExecStart or set environmentFile = false."
      ) (attrNames enabled);

      systemd.services = mkMerge (
        mapAttrsToList unitsFor fileDelivered ++ mapAttrsToList (n: s: (refreshUnitsFor n s).services) refreshable
      );
      systemd.timers = mkMerge (mapAttrsToList (n: s: (refreshUnitsFor n s).timers) refreshable);

      systemd.tmpfiles.rules =
        optional (lib.any (s: s.serialize || s.cache.enable) (attrValues fileDelivered)) "d ${hsLib.lockDir} 0700 root root - -"
        ++ optional (lib.any (s: s.cache.enable) (attrValues fileDelivered)) "d ${hsLib.cacheMarkerDir} 0700 root root - -";
    })
  ];
}
