# The homelab-secrets Nix library.
#
#   hsLib = import ./nix/lib.nix { inherit lib; };
#
# Pure parts (no pkgs): reference/mode validation, spec generation, the hardening profile.
# `hsLib.mkHelpers { pkgs; package; tokenFile; ... }` binds the unit helpers to a package set:
#
#   mkSecretService  -> the `<name>-secrets` oneshot (a `systemd.services.<x>` value)
#   serviceConfig    -> the fragment for the consuming service (ordering, EnvironmentFile=)
#   fetchSecretFile  -> ExecStartPre= + LoadCredential= for DynamicUser= services
#
# The NixOS module passes these to configuration.nix as the `homelab` module argument.
{ lib }:

let
  inherit (lib)
    all
    attrNames
    attrValues
    concatLists
    concatMap
    concatStringsSep
    elem
    filter
    filterAttrs
    hasPrefix
    isAttrs
    isString
    length
    mapAttrs
    mapAttrsToList
    mkBefore
    mkDefault
    optional
    optionalAttrs
    optionalString
    splitString
    unique
    ;

  # ---------------------------------------------------------------------------------------
  # Validation (mirrors helper/src/reference.ts; the CLI re-checks everything at build time)
  # ---------------------------------------------------------------------------------------

  # One path segment: letters, digits, space, "-", "_", "." and no leading/trailing space.
  segmentRegex = "[A-Za-z0-9_.-]([A-Za-z0-9 _.-]*[A-Za-z0-9_.-])?";
  queryRegex = "(\\?(attribute=(otp|totp)|ssh-format=openssh))?";
  referenceRegex = "op://${segmentRegex}/${segmentRegex}/${segmentRegex}(/${segmentRegex})?${queryRegex}";

  isValidReference = ref: isString ref && builtins.match referenceRegex ref != null;

  # "0400", "400", "0640" … (octal, no setuid/setgid/sticky bits on secrets).
  isValidMode = mode: isString mode && builtins.match "0?[0-7]{3}" mode != null;

  normalizeMode = mode: if isValidMode mode && builtins.stringLength mode == 3 then "0${mode}" else mode;

  # A mode that lets "other" read or anybody write a secret is refused.
  isSafeMode =
    mode:
    isValidMode mode
    && (
      let
        digits = lib.stringToCharacters (normalizeMode mode);
        group = lib.toInt (builtins.elemAt digits 2);
        other = lib.toInt (builtins.elemAt digits 3);
      in
      other == 0 && !(elem group [ 2 3 6 7 ])
    );

  isValidEnvName = name: builtins.match "[A-Za-z_][A-Za-z0-9_]*" name != null;

  # An output name is one plain file name inside the output directory (the CLI's rule,
  # helper/src/spec.ts outputNameProblem): letters, digits, "._@-", not starting with "." or
  # "-", not ending in ".hs-tmp", and short enough (230) for the temp file beside it.
  isValidOutputName =
    name:
    isString name
    && builtins.match "[A-Za-z0-9_][A-Za-z0-9_.@-]*" name != null
    && !(lib.hasSuffix ".hs-tmp" name)
    && builtins.stringLength name <= 230;

  # `op inject` syntax: {{ op://vault/item/field }} (ASCII whitespace inside the braces
  # optional). Any other {{ … }} (Go templates: {{ .Labels }}) is literal text, as for the
  # CLI (helper/src/render/template.ts).
  templateParts = content: builtins.split "[{][{][[:space:]]*(op://[^}]*)[}][}]" content;

  stripTrailingSpace =
    text:
    let
      m = builtins.match "(.*[^[:space:]])[[:space:]]*" text;
    in
    if m == null then "" else builtins.head m;

  templateReferences =
    content: map (m: stripTrailingSpace (builtins.head m)) (filter builtins.isList (templateParts content));

  # A placeholder that does not parse (a "}" missing or inside) would be written as text.
  isMalformedTemplate =
    content:
    lib.any (text: builtins.match ".*[{][{][[:space:]]*op://.*" text != null) (filter isString (templateParts content));

  isValidUnitName = name: builtins.match "[a-zA-Z0-9@%:_.\\\\-]+" name != null;

  # ---------------------------------------------------------------------------------------
  # Spec (JSON, version 1)
  # ---------------------------------------------------------------------------------------

  defaultTokenCredential =
    type:
    {
      onepassword = "op-token";
      connect = "op-connect-token";
      file = null;
    }
    .${type};

  # Source as it appears in a spec: { type; tokenCredential?; host?; path? }.
  normalizeSource =
    source:
    let
      s = {
        type = "onepassword";
      }
      // filterAttrs (_: v: v != null) source;
      cred = s.tokenCredential or (defaultTokenCredential s.type);
    in
    assert lib.assertMsg (elem s.type [
      "onepassword"
      "connect"
      "file"
    ]) "homelab-secrets: source.type must be onepassword, connect or file (got ${toString s.type})";
    { inherit (s) type; }
    // optionalAttrs (cred != null && s.type != "file") { tokenCredential = cred; }
    // optionalAttrs (s.type == "connect") { host = s.host or null; }
    // optionalAttrs (s.type == "connect" && s ? listenerUser) { inherit (s) listenerUser; }
    // optionalAttrs (s.type == "file") { path = s.path or null; };

  # A file may be given as "op://…" or { reference | ref; mode; }.
  normalizeFile =
    default: v:
    if isString v then
      {
        ref = v;
        mode = default;
      }
    else
      {
        ref = v.reference or v.ref;
        mode = normalizeMode (v.mode or default);
      };

  normalizeEnvFile = v: {
    mode = normalizeMode (v.mode or "0400");
    inherit (v) vars;
  };

  normalizeTemplate =
    v:
    if isString v then
      {
        mode = "0400";
        content = v;
      }
    else
      {
        mode = normalizeMode (v.mode or "0400");
        inherit (v) content;
      };

  mkSpec =
    {
      name,
      outputDir ? "/run/${name}-secrets",
      owner ? null,
      group ? null,
      dirMode ? null,
      source ? { },
      files ? { },
      envFiles ? { },
      templates ? { },
      ...
    }:
    {
      version = 1;
      inherit name outputDir;
      source = normalizeSource source;
      files = mapAttrs (_: normalizeFile "0400") files;
      envFiles = mapAttrs (_: normalizeEnvFile) envFiles;
      templates = mapAttrs (_: normalizeTemplate) templates;
    }
    // optionalAttrs (owner != null) { inherit owner; }
    // optionalAttrs (group != null) { inherit group; }
    // optionalAttrs (dirMode != null) { dirMode = normalizeMode dirMode; };

  # Every reference a spec mentions (for assertions and docs).
  specReferences =
    spec:
    (mapAttrsToList (_: f: f.ref) spec.files)
    ++ concatLists (mapAttrsToList (_: e: attrValues e.vars) spec.envFiles)
    ++ concatLists (mapAttrsToList (_: t: templateReferences t.content) spec.templates);

  # Human-readable problems with a spec; [] when it is fine. Used for module assertions.
  specProblems =
    spec:
    let
      where = "homelab-secrets (${spec.name})";
      outputs =
        attrNames spec.files ++ attrNames spec.envFiles ++ attrNames spec.templates;
      dups = unique (filter (n: length (filter (m: m == n) outputs) > 1) outputs);
      modes =
        mapAttrsToList (n: f: {
          inherit n;
          inherit (f) mode;
        }) spec.files
        ++ mapAttrsToList (n: f: {
          inherit n;
          inherit (f) mode;
        }) spec.envFiles
        ++ mapAttrsToList (n: f: {
          inherit n;
          inherit (f) mode;
        }) spec.templates;
      src = spec.source;
    in
    map (r: "${where}: invalid secret reference \"${toString r}\" (expected op://vault/item/[section/]field[?attribute=otp|totp|?ssh-format=openssh]; names may use letters, digits, space, '-', '_', '.')") (
      filter (r: !isValidReference r) (specReferences spec)
    )
    ++ map (m: "${where}: output \"${m.n}\" has mode \"${toString m.mode}\"; use an octal mode like \"0400\" without write access for group or any access for others") (
      filter (m: !isSafeMode m.mode) modes
    )
    ++ optional (spec ? dirMode && !isSafeMode spec.dirMode) "${where}: dirMode \"${toString spec.dirMode}\" must be an octal mode like \"0750\" without write access for group or any access for others"
    ++ map (n: "${where}: duplicate output \"${n}\" (files, envFiles and templates share one directory)") dups
    ++ map (n: "${where}: output name \"${n}\" must be a plain file name of at most 230 characters (letters, digits, \"._@-\", not starting with \".\" or \"-\", not ending in \".hs-tmp\")") (
      filter (n: !isValidOutputName n) outputs
    )
    ++ concatLists (
      mapAttrsToList (
        f: e:
        map (k: "${where}: envFiles.${f}: variable name \"${k}\" must match ^[A-Za-z_][A-Za-z0-9_]*$") (
          filter (k: !isValidEnvName k) (attrNames e.vars)
        )
        ++ optional (e.vars == { }) "${where}: envFiles.${f} has no vars"
      ) spec.envFiles
    )
    ++ map (n: "${where}: template \"${n}\" contains no {{ op://… }} reference") (
      attrNames (filterAttrs (_: t: templateReferences t.content == [ ]) spec.templates)
    )
    ++ map (n: "${where}: template \"${n}\" has a malformed placeholder (write {{ op://vault/item/field }})") (
      attrNames (filterAttrs (_: t: isMalformedTemplate t.content) spec.templates)
    )
    ++ optional (
      !(hasPrefix "/" spec.outputDir) || builtins.match ".*/\\.\\.?(/.*)?" spec.outputDir != null
    ) "${where}: outputDir \"${spec.outputDir}\" must be an absolute path without . or .. components"
    ++ optional (outputs == [ ]) "${where}: nothing to fetch (no files, envFiles or templates)"
    ++ optional (src.type == "connect" && !(isString (src.host or null) && builtins.match "https?://.+" src.host != null)) "${where}: a connect source needs host = \"http(s)://…\""
    ++ optional (src.type == "file" && !(isString (src.path or null) && hasPrefix "/" src.path)) "${where}: a file source needs an absolute path";

  # The `source` option of a service (homelab.secrets.<name>.source) and of the agent
  # (homelab.agent.source): one type for both.
  sourceModule = {
    options = {
      type = lib.mkOption {
        type = lib.types.enum [
          "onepassword"
          "connect"
          "file"
        ];
        default = "onepassword";
        description = ''
          Where references are resolved: `onepassword` (1Password service account, the
          default), `connect` (a 1Password Connect server, see `host`) or `file` (a local
          JSON vault, for demos and tests only).
        '';
      };
      host = lib.mkOption {
        type = lib.types.nullOr lib.types.str;
        default = null;
        example = "http://127.0.0.1:8080";
        description = "Connect server URL (for `type = \"connect\"`).";
      };
      listenerUser = lib.mkOption {
        type = lib.types.nullOr (lib.types.either lib.types.str lib.types.ints.unsigned);
        default = null;
        example = "onepassword-connect";
        description = ''
          For a plain-http Connect `host` on loopback: the account (name or uid) whose listening
          socket may receive the token, besides root. Any other local listener on that port is
          refused before the token is sent (a local user could otherwise squat the port while
          Connect restarts).
        '';
      };
      path = lib.mkOption {
        type = lib.types.nullOr lib.types.str;
        default = null;
        example = "/etc/homelab-secrets/vault.json";
        description = "Local JSON vault (for `type = \"file\"`).";
      };
      tokenCredential = lib.mkOption {
        type = lib.types.nullOr lib.types.str;
        default = null;
        description = ''
          Name of the systemd credential holding the token (`LoadCredential=NAME:…`).
          Default: `op-token`, or `op-connect-token` for Connect.
        '';
      };
    };
  };

  # ---------------------------------------------------------------------------------------
  # Unit pieces
  # ---------------------------------------------------------------------------------------

  # The helper's exit codes that retrying cannot fix (sysexits: 65 data, 69 not found, 77 permission, 78 configuration).
  permanentExitCodes = [
    65
    69
    77
    78
  ];

  defaultDeadline = 45;

  # TimeoutStartSec= must be above --deadline so the helper reports its own clear error
  # before systemd kills it.
  timeoutFor = deadline: if deadline + 30 > 60 then deadline + 30 else 60;

  # A plain-http Connect host: before it sends the token, the helper reads /proc/net/tcp to
  # check who listens on a loopback port, so its unit must not hide /proc/net.
  readsProcNet = source: (source.type or "onepassword") == "connect" && lib.hasPrefix "http://" (source.host or "");

  # The strongest sandbox under which Node + the 1Password SDK (WASM) still run and the
  # helper can still create files owned by another user. No MemoryDenyWriteExecute=: V8's
  # JIT and WASM compilation need writable+executable memory.
  hardening =
    {
      network ? true,
      # readsProcNet: ProcSubset=all instead of pid.
      procNet ? false,
    }:
    {
      ProtectSystem = "strict";
      ProtectHome = true;
      PrivateTmp = true;
      PrivateDevices = true;
      PrivateIPC = true;
      NoNewPrivileges = true;
      ProtectKernelTunables = true;
      ProtectKernelModules = true;
      ProtectKernelLogs = true;
      ProtectControlGroups = true;
      ProtectClock = true;
      ProtectHostname = true;
      ProtectProc = "invisible";
      ProcSubset = if procNet then "all" else "pid";
      RestrictNamespaces = true;
      RestrictRealtime = true;
      RestrictSUIDSGID = true;
      LockPersonality = true;
      RemoveIPC = true;
      KeyringMode = "private";
      UMask = "0077";
      # chown/chmod of outputs for another user, and writing into that user's directory.
      CapabilityBoundingSet = [
        "CAP_CHOWN"
        "CAP_FOWNER"
        "CAP_DAC_OVERRIDE"
      ];
      AmbientCapabilities = "";
      SystemCallArchitectures = "native";
      SystemCallFilter = [ "@system-service" ];
      SystemCallErrorNumber = "EPERM";
      # NixOS runs systemd-coredump: a crash must not write the token or values to disk.
      LimitCORE = 0;
      RestrictAddressFamilies =
        if network then
          [
            "AF_UNIX"
            "AF_INET"
            "AF_INET6"
          ]
        else
          [ "AF_UNIX" ];
    }
    // optionalAttrs (!network) { PrivateNetwork = true; };

  # The sandbox as NixOS defaults: a user's plain `serviceConfig.<Key> = …` wins.
  defaultHardening = args: mapAttrs (_: mkDefault) (hardening args);

  # "app" -> "app.service"; a name with a unit suffix is kept.
  unitNameOf =
    n:
    if builtins.match ".*[.](service|socket|device|mount|automount|swap|target|path|timer|scope|slice)" n != null then
      n
    else
      "${n}.service";

  # Directory that `--serialize` uses for its host-wide lock (created by tmpfiles).
  lockDir = "/run/homelab-secrets";

  # `fetch --cache`: the sealed values live in the secrets units' StateDirectory= (root's,
  # 0700); a unit running on cached values says so in cacheMarkerDir (created by tmpfiles).
  cacheStateDirectory = "homelab-secrets";
  cacheMarkerDir = "/run/homelab-secrets/cached";
  defaultCacheMaxAge = 604800;
  defaultCacheReuse = 60;
  # A cache argument as mkSecretService and mkRefreshUnits take it: null, or { enable ? true; … }.
  cacheEnabled = cache: cache != null && (cache.enable or true);
  # systemd-creds --with-key=auto uses the TPM2 when the kernel has one; PrivateDevices= would
  # hide its device node while /sys still shows it, and the encryption would fail.
  tpmDevice = "/dev/tpmrm0";

  # "/run/foo" -> "foo" when the output dir is a direct child of /run (then it can be the
  # secrets unit's RuntimeDirectory=, which systemd creates, makes writable and removes).
  runtimeDirectoryOf =
    dir:
    let
      m = builtins.match "/run/([^/]+)/?" dir;
    in
    if m == null then null else builtins.head m;

  # ---------------------------------------------------------------------------------------
  # Credential agent (homelab.agent; helper/src/agent/policy.ts reads what this writes)
  # ---------------------------------------------------------------------------------------

  # Where consumers' LoadCredential=ID:… connects; root-only (systemd loads credentials as root).
  agentSocket = "/run/homelab-secrets/credentials.sock";

  # The agent policy (JSON, version 1): unit -> credential ID -> what to render, from
  # { <service> = { files; envFiles; templates; }; } in the module's (or mkSpec's) forms.
  mkAgentPolicy =
    {
      source ? { },
      services,
    }:
    {
      version = 1;
      source = normalizeSource source;
      units = lib.mapAttrs' (
        name: s:
        lib.nameValuePair (unitNameOf name) (
          filterAttrs (_: v: v != { }) {
            files = mapAttrs (_: f: { inherit (normalizeFile "0400" f) ref; }) (s.files or { });
            envFiles = mapAttrs (_: e: { inherit (e) vars; }) (s.envFiles or { });
            templates = mapAttrs (_: t: { inherit (normalizeTemplate t) content; }) (s.templates or { });
          }
        )
      ) services;
    };

  # ---------------------------------------------------------------------------------------
  # Helpers bound to a package set
  # ---------------------------------------------------------------------------------------
  mkHelpers =
    {
      pkgs,
      package,
      # Default token for onepassword (and file) sources: e.g. config.age.secrets.op.path.
      tokenFile ? null,
      # Default token for connect sources.
      connectTokenFile ? null,
      # The systemd whose systemctl the secrets unit uses to start its service again after a
      # late success (NixOS: config.systemd.package).
      systemd ? pkgs.systemd,
    }:
    let
      exe = "${package}/bin/homelab-secrets";
      systemctl = "${systemd}/bin/systemctl";
      systemdCreds = "${systemd}/bin/systemd-creds";

      # The spec in the store, checked by `homelab-secrets check` when it is built.
      specFile =
        spec:
        let
          problems = specProblems spec;
        in
        if problems != [ ] then
          throw (concatStringsSep "\n" problems)
        else
          pkgs.runCommand "${spec.name}-spec.json"
            {
              json = builtins.toJSON spec;
              passAsFile = [ "json" ];
              nativeBuildInputs = [ package ];
              preferLocalBuild = true;
              allowSubstitutes = false;
            }
            ''
              homelab-secrets check --spec "$jsonPath"
              cp "$jsonPath" "$out"
            '';

      tokenFor =
        source: explicit:
        if explicit != null then
          explicit
        else if (source.type or "onepassword") == "connect" then
          connectTokenFile
        else
          tokenFile;

      credentialFor =
        spec: token:
        let
          name = spec.source.tokenCredential or (defaultTokenCredential "onepassword");
        in
        optional (token != null) "${name}:${toString token}";

      # What a unit that stores the sealed cache needs (the secrets unit and its refresh unit):
      # the host key's setup, the marker directory, the state directory and the TPM2.
      cacheUnitParts = cacheOn: {
        # The host key systemd-creds seals the cache with, created once outside the sandbox
        # (ProtectSystem=strict keeps /var/lib/systemd read-only in it). "-": without it the
        # store only warns; the fetch itself must not fail.
        execStartPre = optional cacheOn "-+${systemdCreds} setup";
        # "-": a missing marker directory must not stop the fetch; the helper only warns.
        readWritePaths = optional cacheOn "-${cacheMarkerDir}";
        serviceConfig = optionalAttrs cacheOn {
          StateDirectory = cacheStateDirectory;
          StateDirectoryMode = "0700";
          # The TPM2 (when there is one) in the private /dev: "-" when the host has none.
          BindPaths = [ "-${tpmDevice}" ];
          DeviceAllow = [ "${tpmDevice} rw" ];
        };
      };

      fetchCommand =
        {
          spec,
          deadline,
          serialize,
          verbose ? false,
          # { maxAge; reuse; } or null
          cache ? null,
        }:
        concatStringsSep " " (
          [
            exe
            "fetch"
            "--spec"
            "${specFile spec}"
            "--deadline"
            (toString deadline)
          ]
          ++ optional serialize "--serialize"
          ++ optional verbose "--verbose"
          ++ lib.optionals (cache != null) [
            "--cache"
            "--cache-max-age"
            (toString cache.maxAge)
            "--cache-reuse"
            (toString cache.reuse)
          ]
        );
    in
    rec {
      inherit specFile;

      /**
        The `<name>-secrets` oneshot for the service `<name>`. Assign it to
        `systemd.services."<name>-secrets"` (or use `homelab.secrets.<name>`, which does).

        Arguments: name; files / secrets (alias); envFiles; templates; owner; group;
        dirMode ("0750"); outputDir ("/run/<name>-secrets"); source ({ type = "onepassword"; });
        tokenFile (default: the module's homelab.onePassword.tokenFile, or connectTokenFile
        for connect); deadline (45); serialize (false); verbose (false); service
        ("<name>.service", the consumer; a bare name gets ".service"); serviceConfig (extra
        [Service] keys); stopWhenUnneeded (false; true for a consumer whose run ends, e.g. a
        timer's oneshot, so its secrets go when the run ends); fromAgent (false; true: the
        values come from the credential agent, whose policy must then name
        "<name>-secrets.service" with these outputs, and no token is loaded); cache (null, or
        { enable ? true; maxAge ? 604800; reuse ? 60; }: keep the last values sealed with
        systemd-creds in /var/lib/homelab-secrets and use them when the backend fails
        temporarily; not with fromAgent).

        `nixos-rebuild switch` never restarts this unit (restartIfChanged = false): a change of
        the helper alone restarts no service; the new definition is used at the next start.
        The sandbox is set with mkDefault: override any key with a plain definition.
      */
      mkSecretService =
        args@{
          name,
          files ? args.secrets or { },
          envFiles ? { },
          templates ? { },
          owner ? "root",
          group ? owner,
          dirMode ? "0750",
          outputDir ? "/run/${name}-secrets",
          source ? { },
          tokenFile ? null,
          deadline ? defaultDeadline,
          serialize ? false,
          verbose ? false,
          service ? "${name}.service",
          serviceConfig ? { },
          stopWhenUnneeded ? false,
          # Values from the credential agent (homelab.agent) instead of a sign-in of its own:
          # each output is loaded with LoadCredential= from the agent's socket, no token.
          fromAgent ? false,
          # The sealed last-known-good cache (docs/cache.md): null, or { enable; maxAge; reuse; }.
          cache ? null,
          ...
        }:
        let
          cacheOn = cacheEnabled cache;
          cacheParts = cacheUnitParts cacheOn;
          cacheArgs =
            if cacheOn then
              {
                maxAge = cache.maxAge or defaultCacheMaxAge;
                reuse = cache.reuse or defaultCacheReuse;
              }
            else
              null;
          consumer = unitNameOf service;
          spec = mkSpec {
            inherit
              name
              outputDir
              owner
              group
              dirMode
              source
              files
              envFiles
              templates
              ;
          };
          token = tokenFor spec.source tokenFile;
          network = !fromAgent && spec.source.type != "file";
          procNet = !fromAgent && readsProcNet spec.source;
          runtimeDir = runtimeDirectoryOf outputDir;
          outputNames = attrNames spec.files ++ attrNames spec.envFiles ++ attrNames spec.templates;
          readWritePaths =
            optional (runtimeDir == null) (builtins.dirOf outputDir)
            ++ optional serialize lockDir
            ++ cacheParts.readWritePaths;
        in
        assert lib.assertMsg (
          !(cacheOn && fromAgent)
        ) "homelab-secrets (${name}): cache is not available with values from the credential agent (fromAgent)";
        {
          description = "homelab-secrets: fetch secrets for ${consumer}";
          before = [ consumer ];
          partOf = [ consumer ];
          requiredBy = [ consumer ];
          # A switch neither restarts nor (through the queued start below) starts anything:
          # what is fetched changing restarts the consumer (restartTriggers), and with it this.
          restartIfChanged = mkDefault false;
          unitConfig = optionalAttrs stopWhenUnneeded { StopWhenUnneeded = true; };
          after = optional network "network-online.target" ++ optional fromAgent "homelab-secrets-agent.socket";
          wants = optional network "network-online.target";
          requires = optional fromAgent "homelab-secrets-agent.socket";
          # A failing fetch must not turn into a tight loop that burns 1Password rate limits.
          startLimitIntervalSec = 300;
          startLimitBurst = 5;
          serviceConfig =
            defaultHardening { inherit network procNet; }
            // {
              Type = "oneshot";
              RemainAfterExit = true;
              ExecStart =
                if fromAgent then
                  "${exe} install --spec ${specFile spec}"
                else
                  fetchCommand {
                    inherit
                      spec
                      deadline
                      serialize
                      verbose
                      ;
                    cache = cacheArgs;
                  };
              # Recovery from a transient failure (e.g. exit 75: backend unreachable at boot).
              # A failed fetch fails the service's start job (result `dependency`) and that job
              # is gone; Restart= then re-runs only this unit, so nothing would start the
              # service again. So every run first queues a start of the service: it waits for
              # this unit (After=) and needs it (Requires=), so it starts the service only if
              # this run's fetch succeeds, and fails as `dependency` again otherwise.
              # - When the service's own start or restart job is what runs this unit, the
              #   queued start merges into that job: no second start. --no-block: never wait
              #   for a job that itself waits for this unit.
              # - --job-mode=fail: a pending stop (`systemctl stop` racing us) is never undone.
              # - ExecStartPre=, not ExecStartPost=: systemd re-applies RuntimeDirectory=
              #   ownership (recursively, to this unit's user, root) before every command, which
              #   after the fetch would take the files away from their owner.
              # - "+": outside this unit's sandbox; "-": a refused start is logged and ignored.
              ExecStartPre = [
                "-+${systemctl} start --no-block --job-mode=fail ${consumer}"
              ]
              ++ cacheParts.execStartPre;
              ExecStop = "${exe} cleanup --spec ${specFile spec}";
              LoadCredential = if fromAgent then map (n: "${n}:${agentSocket}") outputNames else credentialFor spec token;
              TimeoutStartSec = toString (timeoutFor deadline);
              Restart = "on-failure";
              RestartSec = "10s";
              RestartPreventExitStatus = map toString permanentExitCodes;
              SyslogIdentifier = "${name}-secrets";
            }
            // (
              if runtimeDir != null then
                {
                  # systemd creates it (writable despite ProtectSystem=strict) and removes it,
                  # with everything in it, when this unit stops, i.e. when the service stops.
                  RuntimeDirectory = runtimeDir;
                  RuntimeDirectoryMode = normalizeMode dirMode;
                }
              else
                { }
            )
            // optionalAttrs (readWritePaths != [ ]) { ReadWritePaths = readWritePaths; }
            // cacheParts.serviceConfig
            // serviceConfig;
        };

      /**
        Refresh on a timer: `<name>-secrets-refresh.service` fetches the secrets of a RUNNING
        `<name>` again and, only when a file's bytes, mode or owner changed, rewrites them all
        and restarts (or reloads) the consumer; `<name>-secrets-refresh.timer` runs it every
        `interval`. Returns `{ services; timers; }` keyed by unit name (without suffix):

          systemd.services = r.services; systemd.timers = r.timers;   # r = homelab.mkRefreshUnits { … }

        Arguments: those of mkSecretService (name, files, envFiles, templates, owner, group,
        dirMode, outputDir, source, tokenFile, deadline, serialize, verbose, service), the
        same values, so that the refresh compares against what the secrets unit writes; and
        interval ("1h": OnBootSec= and OnUnitActiveSec=), onChange ("restart", "reload" or
        "none"), randomizedDelay ("5m": RandomizedDelaySec=, spreads a fleet's requests); cache
        (as given to mkSecretService: with it on, a successful refresh seals the values and
        removes the cached-values marker; it never reads the cache).

        The refresh unit never starts anything: ConditionPathIsDirectory= skips it while the
        output directory does not exist (the secrets unit's RuntimeDirectory= exists only while
        the service runs), and the CLI leaves alone a directory holding none of the outputs.
        The restart is `systemctl try-restart --job-mode=ignore-requirements <service>`: only
        the service restarts, not its secrets unit (PartOf=), which would fetch a second time.
        fromAgent (as given to mkSecretService): the refresh unit loads the same outputs from
        the agent's socket (LoadCredential=, no token, no network; the agent's policy must map
        `<name>-secrets-refresh.service` to `{ refreshes = "<name>-secrets.service"; }`, which
        homelab.agent does) and runs `refresh --from-credentials`. Not for DynamicUser= services.
      */
      mkRefreshUnits =
        args@{
          name,
          files ? args.secrets or { },
          envFiles ? { },
          templates ? { },
          owner ? "root",
          group ? owner,
          dirMode ? "0750",
          outputDir ? "/run/${name}-secrets",
          source ? { },
          tokenFile ? null,
          deadline ? defaultDeadline,
          serialize ? false,
          verbose ? false,
          service ? "${name}.service",
          interval ? "1h",
          onChange ? "restart",
          randomizedDelay ? "5m",
          fromAgent ? false,
          # As given to mkSecretService: with it on, a refresh stores the sealed cache too.
          cache ? null,
          ...
        }:
        let
          consumer = unitNameOf service;
          unit = "${name}-secrets-refresh";
          cacheParts = cacheUnitParts (cacheEnabled cache);
          spec = mkSpec {
            inherit
              name
              outputDir
              owner
              group
              dirMode
              source
              files
              envFiles
              templates
              ;
          };
          token = tokenFor spec.source tokenFile;
          network = !fromAgent && spec.source.type != "file";
          procNet = !fromAgent && readsProcNet spec.source;
          outputNames = attrNames spec.files ++ attrNames spec.envFiles ++ attrNames spec.templates;
          action =
            {
              restart = [
                "--restart"
                consumer
              ];
              reload = [
                "--reload"
                consumer
              ];
              none = [ ];
            }
            .${onChange} or (throw "homelab-secrets (${name}): refresh onChange must be \"restart\", \"reload\" or \"none\" (got ${toString onChange})");
        in
        assert lib.assertMsg (
          !(fromAgent && cacheEnabled cache)
        ) "homelab-secrets (${name}): cache is not available with values from the credential agent (fromAgent)";
        assert lib.assertMsg (isString interval && interval != "") "homelab-secrets (${name}): refresh interval must be a systemd time span such as \"1h\"";
        {
          services.${unit} = {
            description = "homelab-secrets: refresh the secrets of ${consumer} (restart or reload it if they changed)";
            after = [
              "${name}-secrets.service"
            ]
            ++ optional network "network-online.target"
            ++ optional fromAgent "homelab-secrets-agent.socket";
            wants = optional network "network-online.target";
            requires = optional fromAgent "homelab-secrets-agent.socket";
            # A switch does not run it; the timer does.
            restartIfChanged = false;
            # Not running (no output directory): skipped, nothing fetched, nothing created.
            unitConfig.ConditionPathIsDirectory = outputDir;
            serviceConfig = defaultHardening { inherit network procNet; } // {
              Type = "oneshot";
              ExecStart = concatStringsSep " " (
                (
                  if fromAgent then
                    # The agent answers this unit's loads fresh (its policy: "refreshes").
                    [
                      exe
                      "refresh"
                      "--spec"
                      "${specFile spec}"
                      "--from-credentials"
                    ]
                  else
                    [
                      exe
                      "refresh"
                      "--spec"
                      "${specFile spec}"
                      "--deadline"
                      (toString deadline)
                    ]
                    ++ optional serialize "--serialize"
                )
                ++ optional verbose "--verbose"
                ++ optional (cacheEnabled cache) "--cache"
                ++ action
              );
              LoadCredential = if fromAgent then map (n: "${n}:${agentSocket}") outputNames else credentialFor spec token;
              # The fetch, then systemctl waiting for the service's restart.
              TimeoutStartSec = toString (timeoutFor deadline + 90);
              # "-": gone (the service stopped) between the condition and the start is no error.
              ReadWritePaths = [ "-${outputDir}" ] ++ optional (serialize && !fromAgent) lockDir ++ cacheParts.readWritePaths;
              SyslogIdentifier = unit;
            }
            // optionalAttrs (cacheParts.execStartPre != [ ]) { ExecStartPre = cacheParts.execStartPre; }
            // cacheParts.serviceConfig;
          };
          timers.${unit} = {
            description = "homelab-secrets: refresh the secrets of ${consumer} every ${interval}";
            wantedBy = [ "timers.target" ];
            timerConfig = {
              OnBootSec = interval;
              OnUnitActiveSec = interval;
              RandomizedDelaySec = randomizedDelay;
            };
          };
        };

      /**
        The consuming service's side: `systemd.services.<name> = lib.mkMerge [ (homelab.serviceConfig { … }) { … } ];`

        Arguments: name; envFiles (names of env files in the output dir, or attrs as given to
        mkSecretService: every one becomes an EnvironmentFile= WITHOUT "-", so a missing or
        unreadable file fails the start instead of starting without secrets);
        outputDir ("/run/<name>-secrets"); secretsUnit ("<name>-secrets.service");
        supplementaryGroups ([]).
      */
      serviceConfig =
        {
          name,
          envFiles ? [ ],
          outputDir ? "/run/${name}-secrets",
          secretsUnit ? "${name}-secrets.service",
          supplementaryGroups ? [ ],
          ...
        }:
        let
          envNames = if isAttrs envFiles then attrNames envFiles else envFiles;
        in
        {
          after = [ secretsUnit ];
          requires = [ secretsUnit ];
          environment.HOMELAB_SECRETS_DIR = outputDir;
          serviceConfig =
            optionalAttrs (envNames != [ ]) {
            EnvironmentFile = map (n: "${outputDir}/${n}") envNames;
          }
            // optionalAttrs (supplementaryGroups != [ ]) { SupplementaryGroups = supplementaryGroups; };
        };

      /**
        For `DynamicUser=yes` services: an ExecStartPre= that fetches into the service's own
        RuntimeDirectory= (which systemd creates for the dynamic user and removes on stop).
        Returns a service fragment: `systemd.services.<name> = lib.mkMerge [ (homelab.fetchSecretFile { … }) { … } ];`

        The token is loaded with LoadCredential= into the service itself, so the service's
        main process can read it too (systemd offers no per-ExecStartPre credentials) — use it
        only for services you trust with the token, or a Connect token scoped to one vault.

        Arguments: name; reference (one secret) and file ("secret") and mode ("0400"), or
        files / envFiles / templates like mkSecretService; runtimeDirectory (name);
        source; tokenFile; deadline; serialize.
      */
      fetchSecretFile =
        args@{
          name,
          runtimeDirectory ? name,
          reference ? null,
          file ? "secret",
          mode ? "0400",
          files ? { },
          envFiles ? { },
          templates ? { },
          source ? { },
          tokenFile ? null,
          deadline ? defaultDeadline,
          serialize ? false,
          verbose ? false,
          ...
        }:
        let
          spec = mkSpec {
            name = "${name}-runtime";
            outputDir = "/run/${runtimeDirectory}";
            inherit source envFiles templates;
            files = files // optionalAttrs (reference != null) { ${file} = { inherit reference mode; }; };
          };
          token = tokenFor spec.source tokenFile;
        in
        {
          serviceConfig = {
            RuntimeDirectory = runtimeDirectory;
            # First: before the service's own preStart and ExecStartPre=, which may read it.
            ExecStartPre = mkBefore [
              (fetchCommand {
                inherit
                  spec
                  deadline
                  serialize
                  verbose
                  ;
              })
            ];
            LoadCredential = credentialFor spec token;
          }
          // optionalAttrs serialize { ReadWritePaths = [ lockDir ]; };
        };
    };
in
{
  inherit
    referenceRegex
    isValidReference
    isValidMode
    isSafeMode
    normalizeMode
    isValidEnvName
    isValidOutputName
    isValidUnitName
    templateReferences
    normalizeSource
    mkSpec
    specReferences
    specProblems
    permanentExitCodes
    defaultDeadline
    timeoutFor
    hardening
    defaultHardening
    readsProcNet
    unitNameOf
    lockDir
    cacheMarkerDir
    cacheStateDirectory
    defaultCacheMaxAge
    defaultCacheReuse
    runtimeDirectoryOf
    mkHelpers
    sourceModule
    agentSocket
    mkAgentPolicy
    ;
}
