#!/usr/bin/env bash
# Regenerate tests/golden/units.json: the units, spec files and /etc entries that the NixOS
# module produces for tests/e2e/configuration.nix, rendered as NixOS would write them. The
# systemd-nspawn e2e suite installs exactly these; tests/nix/eval.test.ts checks the committed
# file against a fresh evaluation.
#
#   NIXPKGS_LIB=/path/to/nixpkgs.lib tests/nix/update-golden.sh
#
# NIXPKGS_LIB: a checkout of nixpkgs' lib (a directory with lib/default.nix, e.g. the
# nix-community/nixpkgs.lib repository or nixpkgs itself, or a directory with default.nix).
set -euo pipefail
cd "$(dirname "$0")/../.."

if [ -z "${NIXPKGS_LIB:-}" ]; then
  echo "update-golden: set NIXPKGS_LIB to a nixpkgs lib checkout" >&2
  exit 64
fi
if [ -f "$NIXPKGS_LIB/lib/default.nix" ]; then
  lib_dir="$NIXPKGS_LIB/lib"
elif [ -f "$NIXPKGS_LIB/default.nix" ]; then
  lib_dir="$NIXPKGS_LIB"
else
  echo "update-golden: $NIXPKGS_LIB has neither lib/default.nix nor default.nix" >&2
  exit 66
fi
lib_dir="$(cd "$lib_dir" && pwd)"

out=tests/golden/units.json
tmp="$(mktemp)"
store="$(mktemp -d)"
trap 'chmod -R u+w "$store" 2>/dev/null; rm -rf "$tmp" "$store"' EXIT
# --read-write-mode: spec files are written to a store so their content can be read back; a
# private one in a temp dir, so this works without root and leaves /nix/store alone.
nix-instantiate --store "local?root=$store" --eval --strict --json --read-write-mode tests/nix/eval-harness.nix \
  --arg lib "import $lib_dir" \
  --arg configuration ./tests/e2e/configuration.nix \
  -A golden >"$tmp"
mkdir -p tests/golden
node -e 'const fs = require("fs"); const g = JSON.parse(fs.readFileSync(process.argv[1], "utf8")); fs.writeFileSync(process.argv[2], JSON.stringify(g, null, 2) + "\n");' "$tmp" "$out"
echo "update-golden: wrote $out ($(node -e 'const g=require(process.argv[1]); console.log(Object.keys(g.units).length + " units, " + Object.keys(g.files).length + " files")' "$PWD/$out"))"
