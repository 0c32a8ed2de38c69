# Flake checks: NixOS VM tests (need KVM and the binary cache) and a real-NixOS evaluation of
# examples/configuration.nix (its generated unit files).
{
  pkgs,
  lib,
  self,
  nixosSystem,
}:

let
  system = pkgs.stdenv.hostPlatform.system;
  fixtures = import ./fixtures.nix;

  # A minimal stand-in for agenix's `age.secrets` option, so the example evaluates without
  # pulling agenix into this flake.
  ageStub =
    { lib, ... }:
    {
      options.age.identityPaths = lib.mkOption {
        type = lib.types.listOf lib.types.path;
        default = [ ];
      };
      options.age.secrets = lib.mkOption {
        default = { };
        type = lib.types.attrsOf (
          lib.types.submodule (
            { name, ... }:
            {
              options = {
                name = lib.mkOption {
                  type = lib.types.str;
                  default = name;
                };
                file = lib.mkOption { type = lib.types.path; };
                path = lib.mkOption {
                  type = lib.types.str;
                  default = "/run/agenix/${name}";
                };
                owner = lib.mkOption {
                  type = lib.types.str;
                  default = "0";
                };
                group = lib.mkOption {
                  type = lib.types.str;
                  default = "0";
                };
                mode = lib.mkOption {
                  type = lib.types.str;
                  default = "0400";
                };
              };
            }
          )
        );
      };
    };

  example = nixosSystem {
    inherit system;
    modules = [
      self.nixosModules.default
      ageStub
      ../../examples/configuration.nix
      {
        boot.isContainer = true;
        system.stateVersion = "26.05";
      }
    ];
  };
  exampleUnits = lib.filterAttrs (n: _: lib.hasSuffix "-secrets.service" n) example.config.systemd.units;
in
{
  vm-services = import ./services.nix { inherit pkgs self fixtures; };
  vm-user-secrets = import ./user-secrets.nix { inherit pkgs self fixtures; };

  example-units = pkgs.runCommand "homelab-secrets-example-units" { nativeBuildInputs = [ pkgs.systemd ]; } ''
    mkdir -p $out
    ${lib.concatStrings (
      lib.mapAttrsToList (n: u: ''
        cp ${u.unit}/${n} $out/${n}
      '') exampleUnits
    )}
    # The sandbox of every secrets unit must stay better than MEDIUM (exposure below 5.0, i.e. "OK" or better).
    for f in $out/*-secrets.service; do
      systemd-analyze security --offline=true --threshold=49 "$f" | tail -n 1
    done
  '';
}
