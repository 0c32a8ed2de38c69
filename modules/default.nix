# The homelab-secrets NixOS module. Import it directly (`imports = [ ./modules ];`) or use
# the flake's `nixosModules.default`, which also sets `homelab.package` to the flake's build.
{
  imports = [
    ./secrets.nix
    ./user-secrets.nix
    ./agent.nix
  ];
}
