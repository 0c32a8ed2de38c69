# Evaluate the homelab-secrets NixOS module against NixOS's OWN modules (no nixpkgs packages):
#
#   nix-instantiate --eval --strict --json tests/nix/eval-harness.nix \
#     --arg lib 'import <nixpkgs>/lib' --arg nixos '<nixpkgs>/nixos' [--arg agenix '<agenix>'] \
#     --arg configuration ./examples/configuration.nix -A units
#
# The real NixOS files declare and render what the module touches: systemd.nix (with
# systemd-lib.nix, systemd-unit-options.nix, systemd-types.nix, utils.nix), tmpfiles.nix,
# etc.nix, security/wrappers, users-groups.nix, assertions.nix; agenix's own module when given.
# Units are NixOS's own rendering: config.systemd.units.<name>.text.
#
# What is not real, and why:
# - `pkgs`: there is no nixpkgs here (nothing can be built). Text files (writeText,
#   runCommand with passAsFile — the module's spec files) are real content-addressed store
#   paths (builtins.toFile; read back only with --read-write-mode, into a private store);
#   every package is a fake store path with a name and version.
# - `stubOptions` below: options that the real modules above READ (or set) but that are
#   declared in NixOS modules not in the evaluated set. Each is declared with the type and
#   default of its real declaration (or a looser type where only its presence matters).
# - `standIns`: nixpkgs service modules the example configuration uses (transmission, restic,
#   grafana). Each declares just the options the example sets and creates the systemd
#   service the real module creates, with the unit settings that matter to homelab-secrets
#   (user, Type=, restartIfChanged, EnvironmentFile=, timer).
{
  lib,
  nixos,
  configuration,
  agenix ? null,
  system ? "x86_64-linux",
}:

let
  inherit (lib)
    attrNames
    concatMap
    filter
    filterAttrs
    isList
    listToAttrs
    mapAttrs
    mapAttrs'
    mkOption
    nameValuePair
    optionalAttrs
    types
    ;

  # ----------------------------------------------------------------------------- stub pkgs
  nix32 = s: builtins.replaceStrings [ "e" "o" "t" "u" ] [ "z" "q" "r" "v" ] s;
  fakeHash = seed: nix32 (builtins.substring 0 32 (builtins.hashString "sha256" seed));
  fakePath = name: "/nix/store/${fakeHash name}-${name}";
  fakeDrv =
    pname: version:
    let
      name = if version == null then pname else "${pname}-${version}";
      self = {
        type = "derivation";
        inherit name pname;
        version = if version == null then "" else version;
        outPath = fakePath name;
        drvPath = fakePath "${name}.drv";
        outputs = [ "out" ];
        out = self;
        bin = self;
        meta = { };
        passthru = { };
        overrideAttrs = _: self;
        override = _: self;
      };
    in
    self;

  pkgs = rec {
    inherit lib;
    _type = "pkgs";
    inherit system;
    stdenv = {
      hostPlatform = {
        inherit system;
        isLinux = true;
        isDarwin = false;
      };
      buildPlatform = stdenv.hostPlatform;
      isLinux = true;
      isDarwin = false;
      is64bit = true;
    };
    buildPackages = pkgs;
    pkgsStatic = pkgs;
    homelab-secrets = fakeDrv "homelab-secrets" "0.1.0";
    callPackage = _: _: homelab-secrets;
    writeText = name: text: builtins.toFile name text;
    writeTextFile = { name, text, ... }: builtins.toFile name text;
    writeShellScript = name: text: builtins.toFile name "#!/bin/sh\n${text}";
    writeShellScriptBin = name: _text: fakeDrv name null;
    # passAsFile content becomes the output (as the module's spec derivation does after
    # `homelab-secrets check`); anything else is an opaque fake path. Like a real derivation's,
    # the output path depends on the build inputs too: the file references a marker of each
    # input (same text, different path when a package changes).
    runCommand =
      name: env: _script:
      let
        inputs = (env.nativeBuildInputs or [ ]) ++ (env.buildInputs or [ ]);
        marker = d: builtins.toFile "input-${d.name or "input"}" (toString d);
        withInputs = text: lib.foldl' (t: d: builtins.substring 0 0 (marker d) + t) text inputs;
      in
      if env ? passAsFile && env.passAsFile != [ ] then
        builtins.toFile name (withInputs env.${builtins.head env.passAsFile})
      else
        fakeDrv name null;
    runCommandLocal = runCommand;
    # the packages the real modules name (lazily: only those a rendered value uses count)
    coreutils = fakeDrv "coreutils" "9.5";
    findutils = fakeDrv "findutils" "4.10.0";
    gnugrep = fakeDrv "gnugrep" "3.11";
    gnused = fakeDrv "gnused" "4.9";
    bash = fakeDrv "bash" "5.2";
    bashInteractive = fakeDrv "bash-interactive" "5.2";
    nodejs = fakeDrv "nodejs" "22.0.0";
    util-linux = fakeDrv "util-linux" "2.41";
    mount = util-linux;
    shadow = fakeDrv "shadow" "4.17";
    age = fakeDrv "age" "1.2.1";
    fish = fakeDrv "fish" "4.0";
    xonsh = fakeDrv "xonsh" "0.19";
    zsh = fakeDrv "zsh" "5.9";
    restic = fakeDrv "restic" "0.18.0";
    transmission_4 = fakeDrv "transmission" "4.0.6";
    grafana = fakeDrv "grafana" "12.0.0";
    systemd = fakeDrv "systemd" "257" // {
      util-linux = util-linux;
      withCryptsetup = false;
      withTpm2Tss = false;
      withBootloader = false;
      withUtmp = true;
      withImportd = false;
      withMachined = false;
      withTimedated = false;
      withLocaled = false;
      withHostnamed = false;
      withPortabled = false;
    };
  };

  # ------------------------------------------------------------------------- stub options
  # Declared in NixOS modules that are not in the evaluated set; read or set by those that are.
  anything = default: mkOption {
    type = types.anything;
    inherit default;
  };
  stubOptions = {
    options = {
      # misc/ids.nix — users-groups.nix and systemd.nix read the uids/gids of the accounts they
      # create (these are misc/ids.nix's values).
      ids.uids = anything {
        root = 0;
        nobody = 65534;
        systemd-network = 152;
        systemd-resolve = 153;
      };
      ids.gids = anything {
        root = 0;
        wheel = 1;
        kmem = 2;
        tty = 3;
        disk = 6;
        audio = 17;
        floppy = 18;
        uucp = 19;
        lp = 20;
        cdrom = 24;
        tape = 25;
        video = 26;
        dialout = 27;
        utmp = 29;
        nixbld = 30;
        adm = 55;
        keys = 96;
        users = 100;
        systemd-network = 152;
        systemd-resolve = 153;
        input = 174;
        kvm = 302;
        render = 303;
        sgx = 304;
        shadow = 318;
        nogroup = 65534;
      };
      # system/activation/activation-script.nix — set by users-groups, etc, wrappers, agenix.
      system.activationScripts = anything { };
      # system/activation/top-level.nix — set by security/wrappers and users-groups.
      system.checks = mkOption {
        type = types.listOf types.anything;
        default = [ ];
      };
      # config/system-path.nix — set by systemd.nix, users-groups.nix.
      environment.systemPackages = mkOption {
        type = types.listOf types.anything;
        default = [ ];
      };
      # config/nsswitch.nix — set by systemd.nix.
      system.nssModules = mkOption {
        type = types.listOf types.anything;
        default = [ ];
      };
      system.nssDatabases = mkOption {
        type = types.attrsOf (types.listOf types.str);
        default = { };
      };
      # system/boot/kernel.nix — set by systemd.nix.
      system.requiredKernelConfig = mkOption {
        type = types.listOf types.anything;
        default = [ ];
      };
      boot.kernel.sysctl = anything { };
      # system/boot/systemd/initrd.nix — read or set by tmpfiles.nix and users-groups.nix.
      boot.initrd.systemd.enable = mkOption {
        type = types.bool;
        default = false;
      };
      boot.initrd.systemd.additionalUpstreamUnits = mkOption {
        type = types.listOf types.str;
        default = [ ];
      };
      boot.initrd.systemd.contents = anything { };
      boot.initrd.systemd.storePaths = mkOption {
        type = types.listOf types.anything;
        default = [ ];
      };
      # services/system/userborn.nix — read by users-groups.nix.
      services.userborn.enable = mkOption {
        type = types.bool;
        default = false;
      };
      # services/system/dbus.nix and services/logging/logrotate.nix — set by systemd.nix.
      services.dbus.enable = mkOption {
        type = types.bool;
        default = false;
      };
      services.logrotate.settings = anything { };
      # programs/shells-environment.nix — users-groups.nix reads it for every user.
      users.defaultUserShell = anything (pkgs.bashInteractive // { shellPath = "/bin/bash"; });
      # system/boot/systemd/user.nix — set by tmpfiles.nix.
      systemd.additionalUpstreamUserUnits = mkOption {
        type = types.listOf types.str;
        default = [ ];
      };
      # security/apparmor.nix — set by security/wrappers.
      security.apparmor.includes = anything { };
      # config/shells-environment.nix — set by users-groups.nix (profiles) and wrappers (extraInit).
      environment.profiles = mkOption {
        type = types.listOf types.str;
        default = [ ];
      };
      environment.extraInit = mkOption {
        type = types.lines;
        default = "";
      };
      # system/boot/systemd/initrd.nix — set by tmpfiles.nix (the initrd's own tmpfiles units).
      boot.initrd.systemd.services = anything { };
    };
  };

  # ------------------------------------------------------------------ stand-in services
  # nixpkgs' services.{transmission,restic,grafana} (not in the evaluated set), reduced to the
  # options the example sets and the units they create.
  standIns =
    { config, lib, ... }:
    let
      inherit (lib) mkIf mkOption types;
    in
    {
      options.services.transmission = {
        enable = lib.mkEnableOption "transmission";
        credentialsFile = mkOption {
          type = types.str;
          default = "/dev/null";
        };
      };
      options.services.grafana = {
        enable = lib.mkEnableOption "grafana";
        settings = mkOption {
          type = types.attrsOf types.anything;
          default = { };
        };
      };
      options.services.restic.backups = mkOption {
        type = types.attrsOf (types.attrsOf types.anything);
        default = { };
      };
      config = lib.mkMerge [
        (mkIf config.services.transmission.enable {
          users.users.transmission = {
            isSystemUser = true;
            group = "transmission";
          };
          users.groups.transmission = { };
          # services/torrent/transmission.nix: preStart merges credentialsFile into settings.json
          systemd.services.transmission = {
            wantedBy = [ "multi-user.target" ];
            after = [ "network-online.target" ];
            wants = [ "network-online.target" ];
            preStart = ''
              ${pkgs.transmission_4}/bin/merge-credentials ${config.services.transmission.credentialsFile}
            '';
            serviceConfig = {
              User = "transmission";
              Group = "transmission";
              ExecStart = "${pkgs.transmission_4}/bin/transmission-daemon -f";
            };
          };
        })
        (mkIf config.services.grafana.enable {
          users.users.grafana = {
            isSystemUser = true;
            group = "grafana";
          };
          users.groups.grafana = { };
          systemd.services.grafana = {
            wantedBy = [ "multi-user.target" ];
            serviceConfig = {
              User = "grafana";
              Group = "grafana";
              ExecStart = "${pkgs.grafana}/bin/grafana server";
            };
          };
        })
        # services/backup/restic.nix: a oneshot per backup, started by its timer, never by a switch.
        {
          systemd.services = lib.mapAttrs' (
            name: b:
            lib.nameValuePair "restic-backups-${name}" {
              restartIfChanged = false;
              wants = [ "network-online.target" ];
              after = [ "network-online.target" ];
              environment.RESTIC_PASSWORD_FILE = b.passwordFile;
              environment.RESTIC_REPOSITORY = b.repository;
              serviceConfig = {
                Type = "oneshot";
                ExecStart = "${pkgs.restic}/bin/restic backup ${lib.concatStringsSep " " b.paths}";
                EnvironmentFile = b.environmentFile;
              };
            }
          ) config.services.restic.backups;
          systemd.timers = lib.mapAttrs' (
            name: b:
            lib.nameValuePair "restic-backups-${name}" {
              wantedBy = [ "timers.target" ];
              timerConfig = b.timerConfig;
            }
          ) config.services.restic.backups;
        }
      ];
    };

  nixosModules = map (p: nixos + "/modules/${p}") [
    "system/boot/systemd.nix"
    "system/boot/systemd/tmpfiles.nix"
    "system/etc/etc.nix"
    "system/build.nix"
    "security/wrappers/default.nix"
    "config/users-groups.nix"
    "misc/assertions.nix"
    "misc/extra-arguments.nix"
  ];

  evalWith =
    configuration:
    lib.evalModules {
      modules =
        nixosModules
        ++ lib.optional (agenix != null) (agenix + "/modules/age.nix")
        ++ [
          stubOptions
          standIns
          { _module.args.pkgs = pkgs; }
          ../../modules
          configuration
        ];
      specialArgs.modulesPath = nixos + "/modules";
    };

  eval = evalWith configuration;
  inherit (eval) config;

  # Units real NixOS defines on its own (systemd.nix's overrides of upstream units): not ours.
  baselineConfig = (evalWith { }).config;
  baseline = attrNames baselineConfig.systemd.units;
  ownWrappers = removeAttrs config.security.wrappers (attrNames baselineConfig.security.wrappers);

  ownUnits = filterAttrs (n: u: u.enable && !(builtins.elem n baseline)) config.systemd.units;

  unitTexts = mapAttrs (_: u: u.text) ownUnits;

  # Parse NixOS's text back into { Section = { Key = "v" | [ "v1" "v2" ]; }; } keeping the
  # order of repeated keys. Install gets RequiredBy=/WantedBy= from the unit's options: NixOS
  # realises them as symlinks (<unit>.requires/, .wants/); the e2e suite does the same.
  sectionsOf =
    name: u:
    let
      lines = filter (l: l != "") (lib.splitString "\n" u.text);
      step =
        acc: line:
        let
          h = builtins.match "[[](.*)[]]" line;
          kv = builtins.match "([^=]+)=(.*)" line;
        in
        if h != null then
          acc // { cur = builtins.head h; }
        else if kv == null then
          throw "${name}: cannot parse unit line: ${line}"
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
    // optionalAttrs (u.requiredBy != [ ]) {
      Install = (parsed.Install or { }) // { RequiredBy = lib.concatStringsSep " " u.requiredBy; };
    };

  units = mapAttrs sectionsOf ownUnits;

  # Store files the units reference, read back WITH their string context: Nix then reads them
  # from the store the evaluation wrote them to (the private one), not the host's /nix/store.
  referencedFiles = lib.unique (
    concatMap (
      t:
      let
        ctx = builtins.getContext t;
      in
      map (p: {
        path = p;
        withContext = builtins.appendContext p { ${p} = ctx.${p}; };
      }) (filter (p: !(lib.hasSuffix ".drv" p)) (attrNames ctx))
    ) (builtins.attrValues unitTexts)
  );

  etcOf =
    e:
    {
      inherit (e) mode user group;
      source = toString e.source;
    }
    // optionalAttrs (e.text != null) { inherit (e) text; };

  ownEtc = filterAttrs (n: e: e.enable && lib.hasPrefix "homelab-secrets" n) config.environment.etc;

  failedAssertions = map (a: a.message) (filter (a: !a.assertion) config.assertions);

  storePaths = {
    package = toString config.homelab.package;
    systemd = toString config.systemd.package;
    # the default PATH NixOS gives every service (systemd-lib.nix stage2ServiceConfig)
    coreutils = toString pkgs.coreutils;
    findutils = toString pkgs.findutils;
    gnugrep = toString pkgs.gnugrep;
    gnused = toString pkgs.gnused;
  };
in
{
  inherit
    config
    units
    unitTexts
    failedAssertions
    storePaths
    ;
  inherit (config) warnings;
  etc = mapAttrs (_: etcOf) ownEtc;
  tmpfiles = config.systemd.tmpfiles.rules;
  wrappers = ownWrappers;
  unitNames = attrNames ownUnits;

  # The golden file for the nspawn e2e suite (needs --read-write-mode for `files`).
  golden = {
    # Store paths the units name; the e2e suite maps each to its place in the container
    # (tests/e2e/render-units.ts containerPathFor).
    inherit storePaths units;
    files = listToAttrs (map (f: nameValuePair f.path (builtins.readFile f.withContext)) referencedFiles);
    etc = mapAttrs (_: etcOf) ownEtc;
    tmpfiles = config.systemd.tmpfiles.rules;
    wrappers = mapAttrs (_: w: {
      inherit (w)
        owner
        group
        setuid
        setgid
        permissions
        ;
      source = toString w.source;
    }) ownWrappers;
  };
}
