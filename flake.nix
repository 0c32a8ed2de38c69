{
  description = "homelab-secrets: 1Password secrets delivered into /run for systemd services and users on NixOS";

  inputs.nixpkgs.url = "github:NixOS/nixpkgs/nixos-26.05";

  outputs =
    { self, nixpkgs }:
    let
      inherit (nixpkgs) lib;
      systems = [
        "x86_64-linux"
        "aarch64-linux"
      ];
      forAllSystems = f: lib.genAttrs systems (system: f nixpkgs.legacyPackages.${system});
      hsLib = import ./nix/lib.nix { inherit lib; };
    in
    {
      # Pure helpers (validation, spec generation) plus `forPkgs pkgs`, which binds
      # mkSecretService / serviceConfig / fetchSecretFile to this flake's package:
      #   (homelab-secrets.lib.forPkgs pkgs { tokenFile = "/run/agenix/op"; }).mkSecretService { … }
      lib = hsLib // {
        forPkgs =
          pkgs: args:
          hsLib.mkHelpers (
            {
              inherit pkgs;
              package = self.packages.${pkgs.stdenv.hostPlatform.system}.default;
            }
            // args
          );
      };

      overlays.default = final: _prev: {
        homelab-secrets = final.callPackage ./nix/package.nix { };
      };

      packages = forAllSystems (pkgs: rec {
        homelab-secrets = pkgs.callPackage ./nix/package.nix { };
        default = homelab-secrets;
      });

      nixosModules.default =
        { pkgs, lib, ... }:
        {
          imports = [ ./modules ];
          homelab.package = lib.mkDefault self.packages.${pkgs.stdenv.hostPlatform.system}.default;
        };
      nixosModules.homelab-secrets = self.nixosModules.default;

      checks = forAllSystems (
        pkgs:
        import ./nix/tests {
          inherit pkgs self;
          inherit (nixpkgs) lib;
          nixosSystem = nixpkgs.lib.nixosSystem;
        }
        // {
          package = self.packages.${pkgs.stdenv.hostPlatform.system}.default;
        }
      );

      devShells = forAllSystems (pkgs: {
        default = pkgs.mkShell {
          packages = [
            pkgs.nodejs
            pkgs.gcc
            pkgs.nixfmt
            pkgs.systemd
          ];
          shellHook = ''
            export NIXPKGS_LIB=${nixpkgs}
          '';
        };
      });

      formatter = forAllSystems (pkgs: pkgs.nixfmt);
    };
}
