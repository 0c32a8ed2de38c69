# homelab-secrets: the TypeScript CLI (compiled with tsc) and the C privilege wrapper.
#
#   $out/bin/homelab-secrets                                   node + helper/dist/cli.js
#   $out/lib/node_modules/homelab-secrets/{package.json,helper/dist,node_modules,examples/demo}
#   $out/libexec/homelab-secrets/homelab-secrets-user          the wrapper (NixOS installs
#                                                               it SUID/SGID via security.wrappers)
#   $out/libexec/homelab-secrets/homelab-secrets-agent         the credential agent's front end
#
# npm dependencies come from package-lock.json through nix/npm-deps.nix (fixed-output
# `npm pack` per package, hashes = the lock's integrity); see README.md, "Packaging: why not node2nix".
{
  lib,
  stdenv,
  stdenvNoCC,
  nodejs,
  cacert,
  makeWrapper,
  configDir ? "/etc/homelab-secrets",
}:

let
  root = ../.;
  packageJson = lib.importJSON (root + "/package.json");
  deps = import ./npm-deps.nix {
    inherit
      lib
      stdenvNoCC
      nodejs
      cacert
      ;
    lockFile = root + "/package-lock.json";
  };
in
stdenv.mkDerivation (finalAttrs: {
  pname = "homelab-secrets";
  inherit (packageJson) version;

  src = lib.fileset.toSource {
    inherit root;
    fileset = lib.fileset.unions [
      (root + "/package.json")
      (root + "/package-lock.json")
      (root + "/tsconfig.json")
      (root + "/helper/src")
      (root + "/helper/wrapper")
      (root + "/helper/agent")
      (root + "/examples/demo")
    ];
  };

  nativeBuildInputs = [
    nodejs
    makeWrapper
  ];

  strictDeps = true;

  configurePhase = ''
    runHook preConfigure
    # the exact node_modules tree of the lock (runtime + tsc and its types), no install scripts
    ${deps.mkNodeModules deps.buildKeys}
    runHook postConfigure
  '';

  buildPhase = ''
    runHook preBuild

    node node_modules/typescript/bin/tsc -p tsconfig.json

    appDir="$out/lib/node_modules/homelab-secrets"
    $CC -O2 -Wall -Wextra -Werror -fstack-protector-strong -D_FORTIFY_SOURCE=2 \
      -fPIE -pie -Wl,-z,relro,-z,now \
      -DHS_NODE="\"${lib.getExe nodejs}\"" \
      -DHS_CLI="\"$appDir/helper/dist/cli.js\"" \
      -DHS_CONFIG_DIR="\"${configDir}\"" \
      -o homelab-secrets-user helper/wrapper/homelab-secrets-user.c
    $CC -O2 -Wall -Wextra -Werror=format-security -fstack-protector-strong -D_FORTIFY_SOURCE=2 \
      -fPIE -pie -Wl,-z,relro,-z,now \
      -o homelab-secrets-agent helper/agent/homelab-secrets-agent.c

    runHook postBuild
  '';

  installPhase = ''
    runHook preInstall

    appDir="$out/lib/node_modules/homelab-secrets"
    mkdir -p "$appDir/helper" "$out/bin" "$out/libexec/homelab-secrets"
    cp package.json "$appDir/"
    cp -r helper/dist "$appDir/helper/dist"
    # `homelab-secrets demo` reads the bundled example spec and demo vault beside the helper
    mkdir -p "$appDir/examples"
    cp -r examples/demo "$appDir/examples/demo"

    # runtime dependencies only
    mkdir runtime && cd runtime
    ${deps.mkNodeModules deps.runtimeKeys}
    cd ..
    mv runtime/node_modules "$appDir/node_modules"

    makeWrapper ${lib.getExe nodejs} "$out/bin/homelab-secrets" \
      --add-flags "$appDir/helper/dist/cli.js"

    install -m 0755 homelab-secrets-user "$out/libexec/homelab-secrets/homelab-secrets-user"
    install -m 0755 homelab-secrets-agent "$out/libexec/homelab-secrets/homelab-secrets-agent"

    runHook postInstall
  '';

  doInstallCheck = true;
  installCheckPhase = ''
    runHook preInstallCheck
    "$out/bin/homelab-secrets" --version | grep -F "${finalAttrs.version}"
    "$out/bin/homelab-secrets" demo --output-dir "$TMPDIR/demo" | grep -F "wrote 4 file(s)"
    runHook postInstallCheck
  '';

  passthru = {
    npmDeps = deps.tarballs;
    inherit nodejs;
  };

  meta = {
    description = packageJson.description;
    license = lib.licenses.mit;
    mainProgram = "homelab-secrets";
    platforms = lib.platforms.linux;
  };
})
