# Evaluates nix/npm-deps.nix against this repository's package-lock.json with a stand-in
# stdenvNoCC that records the attributes of each fixed-output fetch instead of building it.
# Used by tests/nix/npm-deps.test.ts: what Nix would download must be exactly what the lock
# pins, by name, version and integrity, with no registry URL anywhere.
{ lib }:
let
  stdenvNoCC.mkDerivation =
    attrs:
    attrs
    // {
      type = "derivation";
      outPath = "/nix/store/00000000000000000000000000000000-${attrs.name}";
    };
  deps = import ../../nix/npm-deps.nix {
    inherit lib stdenvNoCC;
    nodejs = "/nix/store/00000000000000000000000000000000-nodejs";
    cacert = "/nix/store/00000000000000000000000000000000-cacert";
    lockFile = ../../package-lock.json;
  };
  fetchOf = key: {
    inherit (deps.tarballs.${key})
      name
      pkgSpec
      outputHash
      outputHashMode
      buildCommand
      ;
  };
in
{
  inherit (deps) runtimeKeys buildKeys;
  fetches = lib.genAttrs deps.buildKeys fetchOf;
  unpackRuntime = deps.mkNodeModules deps.runtimeKeys;
}
