# Evaluate the homelab-secrets NixOS module WITHOUT nixpkgs: only nixpkgs' `lib` is needed.
#
#   nix-instantiate --eval --strict --json tests/nix/eval-harness.nix \
#     --arg lib 'import /path/to/nixpkgs.lib/lib' --arg configuration ./examples/configuration.nix -A units
#
# It declares a faithful subset of the NixOS options the module touches (systemd.services with
# the NixOS option names and the NixOS merge rules for unit options, users, security.wrappers,
# environment.etc, systemd.tmpfiles, assertions/warnings and an agenix-like age.secrets) and a
# stub `pkgs` whose text files are real content-addressed store paths (builtins.toFile; read
# back only with --read-write-mode) and whose packages are fake store paths.
#
# Units are rendered with the same rules as nixpkgs' nixos/lib/systemd-lib.nix
# (attrsToSection: a list becomes repeated `Key=` lines, true/false become "true"/"false";
# requires/after/… become one space-separated line; `environment` becomes
# Environment="K=V"; wantedBy becomes [Install] WantedBy=). Not modelled: the default PATH,
# LOCALE_ARCHIVE and TZDIR that NixOS adds to every service, and unit dependencies NixOS
# creates as symlinks (`requiredBy` -> <unit>.requires/, `wantedBy` -> <unit>.wants/).
{
  lib,
  configuration,
  withAge ? true,
  system ? "x86_64-linux",
}:

let
  inherit (lib)
    any
    attrNames
    concatLists
    concatMap
    concatStrings
    concatStringsSep
    filter
    filterAttrs
    isList
    listToAttrs
    mapAttrs
    mapAttrs'
    mapAttrsToList
    mkOption
    mkOptionType
    nameValuePair
    optionalAttrs
    optionalString
    toList
    types
    ;

  # ----------------------------------------------------------------------------- stub pkgs
  nix32 = s: builtins.replaceStrings [ "e" ] [ "z" ] s;
  fakeHash = seed: nix32 (builtins.substring 0 32 (builtins.hashString "sha256" seed));
  fakePath = name: "/nix/store/${fakeHash name}-${name}";
  fakeDrv =
    pname: version:
    let
      name = if version == null then pname else "${pname}-${version}";
    in
    {
      type = "derivation";
      inherit name pname;
      version = if version == null then "" else version;
      outPath = fakePath name;
      drvPath = fakePath "${name}.drv";
      outputs = [ "out" ];
      meta = { };
      passthru = { };
      overrideAttrs = _: fakeDrv pname version;
    };

  pkgs = rec {
    inherit lib;
    stdenv = {
      hostPlatform = {
        inherit system;
      };
      buildPlatform = {
        inherit system;
      };
    };
    homelab-secrets = fakeDrv "homelab-secrets" "0.1.0";
    callPackage = _: _: homelab-secrets;
    writeText = name: text: builtins.toFile name text;
    writeTextFile = { name, text, ... }: builtins.toFile name text;
    writeShellScript = name: text: builtins.toFile name "#!/bin/sh\n${text}";
    writeShellScriptBin = name: text: fakePath name;
    # passAsFile content becomes the output (as the module's spec derivation does after
    # `homelab-secrets check`); anything else is an opaque fake path.
    runCommand =
      name: env: _script:
      if env ? passAsFile && env.passAsFile != [ ] then
        builtins.toFile name env.${builtins.head env.passAsFile}
      else
        fakePath name;
    runCommandLocal = runCommand;
    coreutils = fakeDrv "coreutils" "9.5";
    bash = fakeDrv "bash" "5.2";
    nodejs = fakeDrv "nodejs" "22.0.0";
    systemd = fakeDrv "systemd" "257";
  };

  # --------------------------------------------------------------- NixOS option subset
  # nixos/lib/systemd-unit-options.nix: `unitOption`
  unitOption = mkOptionType {
    name = "systemd option";
    check =
      v:
      let
        atom = x: builtins.isString x || builtins.isInt x || builtins.isBool x || builtins.isPath x || builtins.isFloat x;
      in
      atom v || (isList v && builtins.all atom v);
    merge =
      loc: defs:
      let
        defs' = lib.filterOverrides defs;
      in
      if any (def: isList def.value) defs' then
        concatMap (def: toList def.value) defs'
      else
        lib.mergeEqualOption loc defs';
  };

  unitNames = types.listOf types.str;

  serviceModule =
    {
      name,
      config,
      options,
      ...
    }:
    {
      options = {
        enable = mkOption {
          type = types.bool;
          default = true;
        };
        description = mkOption {
          type = types.singleLineStr;
          default = "";
        };
        documentation = mkOption {
          type = unitNames;
          default = [ ];
        };
        requires = mkOption {
          type = unitNames;
          default = [ ];
        };
        wants = mkOption {
          type = unitNames;
          default = [ ];
        };
        upholds = mkOption {
          type = unitNames;
          default = [ ];
        };
        after = mkOption {
          type = unitNames;
          default = [ ];
        };
        before = mkOption {
          type = unitNames;
          default = [ ];
        };
        bindsTo = mkOption {
          type = unitNames;
          default = [ ];
        };
        partOf = mkOption {
          type = unitNames;
          default = [ ];
        };
        conflicts = mkOption {
          type = unitNames;
          default = [ ];
        };
        requisite = mkOption {
          type = unitNames;
          default = [ ];
        };
        requiredBy = mkOption {
          type = unitNames;
          default = [ ];
        };
        wantedBy = mkOption {
          type = unitNames;
          default = [ ];
        };
        upheldBy = mkOption {
          type = unitNames;
          default = [ ];
        };
        onFailure = mkOption {
          type = unitNames;
          default = [ ];
        };
        onSuccess = mkOption {
          type = unitNames;
          default = [ ];
        };
        startLimitIntervalSec = mkOption { type = types.int; };
        startLimitBurst = mkOption { type = types.int; };
        restartTriggers = mkOption {
          type = types.listOf types.unspecified;
          default = [ ];
        };
        unitConfig = mkOption {
          type = types.attrsOf unitOption;
          default = { };
        };
        serviceConfig = mkOption {
          type = types.attrsOf unitOption;
          default = { };
        };
        environment = mkOption {
          type = types.attrsOf (
            types.nullOr (
              types.oneOf [
                types.str
                types.path
                types.package
              ]
            )
          );
          default = { };
        };
        path = mkOption {
          type = types.listOf types.unspecified;
          default = [ ];
        };
        script = mkOption {
          type = types.lines;
          default = "";
        };
        preStart = mkOption {
          type = types.lines;
          default = "";
        };
        restartIfChanged = mkOption {
          type = types.bool;
          default = true;
        };
        reloadIfChanged = mkOption {
          type = types.bool;
          default = false;
        };
        stopIfChanged = mkOption {
          type = types.bool;
          default = true;
        };
      };
      # nixos/lib/systemd-lib.nix `unitConfig` and nixos/modules/system/boot/systemd.nix
      config = {
        unitConfig =
          optionalAttrs (config.requires != [ ]) { Requires = toString config.requires; }
          // optionalAttrs (config.wants != [ ]) { Wants = toString config.wants; }
          // optionalAttrs (config.upholds != [ ]) { Upholds = toString config.upholds; }
          // optionalAttrs (config.after != [ ]) { After = toString config.after; }
          // optionalAttrs (config.before != [ ]) { Before = toString config.before; }
          // optionalAttrs (config.bindsTo != [ ]) { BindsTo = toString config.bindsTo; }
          // optionalAttrs (config.partOf != [ ]) { PartOf = toString config.partOf; }
          // optionalAttrs (config.conflicts != [ ]) { Conflicts = toString config.conflicts; }
          // optionalAttrs (config.requisite != [ ]) { Requisite = toString config.requisite; }
          // optionalAttrs (config.restartTriggers != [ ]) {
            X-Restart-Triggers = "${pkgs.writeText "X-Restart-Triggers-${name}" (toString config.restartTriggers)}";
          }
          // optionalAttrs (config.description != "") { Description = config.description; }
          // optionalAttrs (config.documentation != [ ]) { Documentation = toString config.documentation; }
          // optionalAttrs (config.onFailure != [ ]) { OnFailure = toString config.onFailure; }
          // optionalAttrs (config.onSuccess != [ ]) { OnSuccess = toString config.onSuccess; }
          // optionalAttrs options.startLimitIntervalSec.isDefined {
            StartLimitIntervalSec = toString config.startLimitIntervalSec;
          }
          // optionalAttrs options.startLimitBurst.isDefined {
            StartLimitBurst = toString config.startLimitBurst;
          };
        serviceConfig = lib.mkMerge [
          (lib.mkIf (config.preStart != "") {
            ExecStartPre = [ (pkgs.writeShellScript "${name}-pre-start" config.preStart) ];
          })
          (lib.mkIf (config.script != "") {
            ExecStart = pkgs.writeShellScript "${name}-start" config.script;
          })
        ];
      };
    };

  # nixos/modules/system/etc/etc.nix (subset): `text` becomes `source` via writeText.
  etcModule' =
    {
      name,
      config,
      options,
      ...
    }:
    {
      options = {
        enable = mkOption {
          type = types.bool;
          default = true;
        };
        target = mkOption {
          type = types.str;
          default = name;
        };
        text = mkOption {
          type = types.nullOr types.lines;
          default = null;
        };
        source = mkOption { type = types.either types.path types.str; };
        mode = mkOption {
          type = types.str;
          default = "symlink";
        };
        uid = mkOption {
          type = types.int;
          default = 0;
        };
        gid = mkOption {
          type = types.int;
          default = 0;
        };
        user = mkOption {
          type = types.str;
          default = "+${toString config.uid}";
        };
        group = mkOption {
          type = types.str;
          default = "+${toString config.gid}";
        };
      };
      config.source = lib.mkIf (config.text != null) (
        lib.mkDerivedConfig options.text (pkgs.writeText "etc-${baseNameOf name}")
      );
    };

  wrapperModule =
    { name, ... }:
    {
      options = {
        source = mkOption { type = types.either types.path types.str; };
        program = mkOption {
          type = types.str;
          default = name;
        };
        owner = mkOption { type = types.str; };
        group = mkOption { type = types.str; };
        setuid = mkOption {
          type = types.bool;
          default = false;
        };
        setgid = mkOption {
          type = types.bool;
          default = false;
        };
        permissions = mkOption {
          type = types.str;
          default = "u+rx,g+x,o+x";
        };
        capabilities = mkOption {
          type = types.commas;
          default = "";
        };
      };
    };

  ageModule =
    { name, ... }:
    {
      options = {
        name = mkOption {
          type = types.str;
          default = name;
        };
        file = mkOption { type = types.path; };
        path = mkOption {
          type = types.str;
          default = "/run/agenix/${name}";
        };
        owner = mkOption {
          type = types.str;
          default = "0";
        };
        group = mkOption {
          type = types.str;
          default = "0";
        };
        mode = mkOption {
          type = types.str;
          default = "0400";
        };
        symlink = mkOption {
          type = types.bool;
          default = true;
        };
      };
    };

  nixosSubset = {
    options = {
      assertions = mkOption {
        type = types.listOf types.unspecified;
        default = [ ];
      };
      warnings = mkOption {
        type = types.listOf types.str;
        default = [ ];
      };
      systemd.services = mkOption {
        type = types.attrsOf (types.submodule serviceModule);
        default = { };
      };
      # nixos/modules/system/boot/systemd.nix
      systemd.package = mkOption {
        type = types.package;
        default = pkgs.systemd;
      };
      systemd.tmpfiles.rules = mkOption {
        type = types.listOf types.str;
        default = [ ];
      };
      users.users = mkOption {
        type = types.attrsOf (
          types.submodule {
            freeformType = types.attrsOf types.anything;
            options.group = mkOption {
              type = types.str;
              default = "";
            };
            options.isSystemUser = mkOption {
              type = types.bool;
              default = false;
            };
          }
        );
        default = { };
      };
      users.groups = mkOption {
        type = types.attrsOf (types.submodule { freeformType = types.attrsOf types.anything; });
        default = { };
      };
      security.wrappers = mkOption {
        type = types.attrsOf (types.submodule wrapperModule);
        default = { };
      };
      environment.etc = mkOption {
        type = types.attrsOf (types.submodule etcModule');
        default = { };
      };
      networking.hostName = mkOption {
        type = types.str;
        default = "nixos";
      };
      system.stateVersion = mkOption {
        type = types.str;
        default = "26.05";
      };
      nixpkgs.overlays = mkOption {
        type = types.listOf types.unspecified;
        default = [ ];
      };
      nixpkgs.hostPlatform = mkOption {
        type = types.unspecified;
        default = system;
      };
      # Accepted and ignored: the example host's unrelated settings.
      boot = mkOption {
        type = types.attrsOf types.anything;
        default = { };
      };
      fileSystems = mkOption {
        type = types.attrsOf types.anything;
        default = { };
      };
      services = mkOption {
        type = types.attrsOf types.anything;
        default = { };
      };
      networking.firewall = mkOption {
        type = types.attrsOf types.anything;
        default = { };
      };
    }
    // optionalAttrs withAge {
      age.secrets = mkOption {
        type = types.attrsOf (types.submodule ageModule);
        default = { };
      };
    };
    config._module.args = {
      inherit pkgs;
      utils = { };
    };
  };

  eval = lib.evalModules {
    modules = [
      nixosSubset
      ../../modules
      configuration
    ];
  };

  inherit (eval) config;

  # ----------------------------------------------------------------------- rendering
  toOption =
    x:
    if x == true then
      "true"
    else if x == false then
      "false"
    else
      toString x;

  attrsToSection =
    as:
    concatStrings (
      concatLists (
        mapAttrsToList (
          name: value: map (x: "${name}=${toOption x}\n") (if isList value then value else [ value ])
        ) as
      )
    );

  serviceText =
    def:
    "[Unit]\n"
    + attrsToSection def.unitConfig
    + "\n[Service]\n"
    + concatStrings (
      map (n: optionalString (def.environment.${n} != null) "Environment=${builtins.toJSON "${n}=${def.environment.${n}}"}\n") (
        attrNames def.environment
      )
    )
    + (
      if def.reloadIfChanged then
        "X-ReloadIfChanged=true\n"
      else if !def.restartIfChanged then
        "X-RestartIfChanged=false\n"
      else
        ""
    )
    + optionalString (!def.stopIfChanged) "X-StopIfChanged=false\n"
    + attrsToSection def.serviceConfig
    + optionalString (def.wantedBy != [ ]) "\n[Install]\nWantedBy=${concatStringsSep " " def.wantedBy}\n";

  # Parse rendered text back into { Section = { Key = "v" | [ "v1" "v2" ]; }; } keeping order
  # of repeated keys. RequiredBy= is added to Install: NixOS realises it as a symlink in
  # <unit>.requires/, a plain systemd install needs it in [Install] for `systemctl enable`.
  sectionsOf =
    name: def:
    let
      lines = filter (l: l != "") (lib.splitString "\n" (serviceText def));
      step =
        acc: line:
        let
          h = builtins.match "[[](.*)[]]" line;
          kv = builtins.match "([^=]+)=(.*)" line;
        in
        if h != null then
          acc // { cur = builtins.head h; }
        else
          let
            k = builtins.elemAt kv 0;
            v = builtins.elemAt kv 1;
            sec = acc.out.${acc.cur} or { };
            old = sec.${k} or null;
            new =
              if old == null then
                v
              else if isList old then
                old ++ [ v ]
              else
                [
                  old
                  v
                ];
          in
          acc // { out = acc.out // { ${acc.cur} = sec // { ${k} = new; }; }; };
      parsed =
        (builtins.foldl' step {
          cur = "";
          out = { };
        } lines).out;
    in
    parsed
    // optionalAttrs (def.requiredBy != [ ]) {
      Install = (parsed.Install or { }) // { RequiredBy = concatStringsSep " " def.requiredBy; };
    };

  enabledServices = filterAttrs (_: s: s.enable) config.systemd.services;

  units = mapAttrs' (n: def: nameValuePair "${n}.service" (sectionsOf n def)) enabledServices;
  unitTexts = mapAttrs' (n: def: nameValuePair "${n}.service" (serviceText def)) enabledServices;

  # Store files the units reference (toFile paths carry string context).
  referencedFiles = lib.unique (
    concatMap (t: filter (p: !(lib.hasSuffix ".drv" p)) (attrNames (builtins.getContext t))) (
      builtins.attrValues unitTexts
    )
  );

  etc = mapAttrs (
    _: e:
    {
      inherit (e) mode user group;
    }
    // (if e.text != null then { inherit (e) text; } else { source = toString e.source; })
  ) (filterAttrs (_: e: e.enable) config.environment.etc);
in
{
  inherit config units unitTexts etc;
  failedAssertions = map (a: a.message) (filter (a: !a.assertion) config.assertions);
  inherit (config) warnings;
  tmpfiles = config.systemd.tmpfiles.rules;
  wrappers = config.security.wrappers;
  storePaths = {
    package = toString config.homelab.package;
    systemd = toString config.systemd.package;
  };

  # The golden file for the nspawn e2e suite (needs --read-write-mode for `files`).
  golden = {
    # Store paths the units name; the e2e suite maps each to its place in the container
    # (tests/e2e/render-units.ts containerPathFor): the helper, and systemd (for systemctl).
    storePaths = {
      package = toString config.homelab.package;
      systemd = toString config.systemd.package;
    };
    files = listToAttrs (map (p: nameValuePair p (builtins.readFile p)) referencedFiles);
    inherit units etc;
    tmpfiles = config.systemd.tmpfiles.rules;
    wrappers = mapAttrs (_: w: {
      inherit (w)
        source
        owner
        group
        setuid
        setgid
        permissions
        ;
    }) config.security.wrappers;
  };
}
