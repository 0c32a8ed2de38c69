# npm dependencies from package-lock.json (lockfileVersion 3), without any registry URL in
# the repository: every package is a fixed-output derivation that runs
# `npm pack <name>@<version>` (npm fetches from its own default registry and checks the
# tarball against the lock's integrity) with outputHash = the lock's `integrity` (SRI), so
# every hash is known before anything is fetched.
#
# Returns { tarballs; runtimeKeys; buildKeys; mkNodeModules }.
{
  lib,
  stdenvNoCC,
  nodejs,
  cacert,
  lockFile,
}:

let
  inherit (lib)
    attrNames
    concatMapStrings
    elem
    filter
    filterAttrs
    hasPrefix
    head
    mapAttrs
    removePrefix
    splitString
    ;

  lock = builtins.fromJSON (builtins.readFile lockFile);
  packages = lock.packages;
  root = packages."";

  # "node_modules/a/node_modules/@s/b" -> "@s/b"
  nameOf =
    key: entry:
    entry.name or (
      let
        parts = splitString "node_modules/" key;
      in
      lib.removeSuffix "/" (lib.last parts)
    );

  # The first sha512 hash of an integrity string ("sha512-… sha1-…").
  sriOf =
    key: entry:
    let
      hashes = filter (h: hasPrefix "sha512-" h) (splitString " " (entry.integrity or ""));
    in
    if hashes == [ ] then
      throw "npm-deps: ${key} has no sha512 integrity in package-lock.json"
    else
      head hashes;

  safeName = s: builtins.replaceStrings [ "@" "/" ] [ "" "-" ] s;

  fetchNpm =
    key: entry:
    let
      name = nameOf key entry;
    in
    stdenvNoCC.mkDerivation {
      name = "npm-${safeName name}-${entry.version}.tgz";
      nativeBuildInputs = [ nodejs ];
      outputHashMode = "flat";
      outputHash = sriOf key entry;
      impureEnvVars = lib.fetchers.proxyImpureEnvVars ++ [
        "NPM_CONFIG_REGISTRY"
        "npm_config_registry"
      ];
      SSL_CERT_FILE = "${cacert}/etc/ssl/certs/ca-bundle.crt";
      NODE_EXTRA_CA_CERTS = "${cacert}/etc/ssl/certs/ca-bundle.crt";
      pkgSpec = "${name}@${entry.version}";
      buildCommand = ''
        export HOME="$TMPDIR/home" npm_config_cache="$TMPDIR/cache" npm_config_update_notifier=false
        mkdir -p "$HOME" "$TMPDIR/pack"
        # `npm pack <registry spec>` downloads the published tarball unchanged and verifies it.
        npm pack "$pkgSpec" --pack-destination "$TMPDIR/pack" --ignore-scripts --silent >/dev/null
        mv "$TMPDIR"/pack/*.tgz "$out"
      '';
    };

  # Installed packages (every key except the root "").
  installed = filterAttrs (k: e: k != "" && !(e.link or false)) packages;

  tarballs = mapAttrs fetchNpm installed;

  # Node's resolution from a lock key: nested node_modules first, then the parents'.
  resolve =
    fromKey: dep:
    let
      go =
        prefix:
        let
          candidate = if prefix == "" then "node_modules/${dep}" else "${prefix}/node_modules/${dep}";
        in
        if packages ? ${candidate} then
          candidate
        else if prefix == "" then
          null
        else
          go (
            let
              parts = splitString "/node_modules/" prefix;
            in
            if lib.length parts <= 1 then "" else lib.concatStringsSep "/node_modules/" (lib.init parts)
          );
    in
    go fromKey;

  depsOf =
    key:
    let
      e = packages.${key};
    in
    attrNames ((e.dependencies or { }) // (e.optionalDependencies or { }));

  # All lock keys reachable from `roots` (names resolved from the top level).
  closure =
    roots:
    let
      step =
        seen: keys:
        let
          new = filter (k: k != null && !(elem k seen)) keys;
        in
        if new == [ ] then
          seen
        else
          step (seen ++ new) (lib.unique (lib.concatMap (k: map (resolve k) (depsOf k)) new));
    in
    step [ ] (map (resolve "") roots);

  runtimeKeys = closure (attrNames (root.dependencies or { }));

  # tsc and the type packages it reads, on top of the runtime closure.
  buildKeys = lib.unique (
    runtimeKeys
    ++ closure [
      "typescript"
      "@types/node"
      "@types/yargs"
    ]
  );

  # A shell snippet that unpacks `keys` into ./node_modules exactly where the lock puts them.
  mkNodeModules =
    keys:
    concatMapStrings (key: ''
      mkdir -p ${lib.escapeShellArg key}
      tar -xzf ${tarballs.${key}} -C ${lib.escapeShellArg key} --strip-components=1 --no-same-owner --no-same-permissions
    '') keys;
in
{
  inherit
    lock
    tarballs
    runtimeKeys
    buildKeys
    mkNodeModules
    ;
}
