#!/usr/bin/env bash
# Regenerate tests/golden/units.json: the units, spec files and /etc entries that the NixOS
# module produces for tests/e2e/configuration.nix, rendered by NixOS's own systemd modules
# (tests/nix/eval-harness.nix). The systemd-nspawn e2e suite installs exactly these;
# tests/nix/eval.test.ts checks the committed file against a fresh evaluation.
#
#   tests/nix/update-golden.sh                       # uses ../shared/nix-eval beside the clone
#   NIXPKGS_LIB=/path/to/nixpkgs tests/nix/update-golden.sh
#
# NIXPKGS_LIB: a nixpkgs checkout (lib/default.nix and nixos/), or a nixpkgs.lib checkout
# (then the NixOS files come from ../shared/nix-eval/nixos).
set -euo pipefail
cd "$(dirname "$0")/../.."

shared="$(cd .. && pwd)/shared/nix-eval"
root="${NIXPKGS_LIB:-}"
if [ -z "$root" ]; then
  [ -f "$shared/lib/default.nix" ] || { echo "update-golden: set NIXPKGS_LIB (no ../shared/nix-eval beside this clone)" >&2; exit 64; }
  root="$shared"
fi
if [ -f "$root/lib/default.nix" ]; then
  lib_dir="$root/lib"
elif [ -f "$root/default.nix" ]; then
  lib_dir="$root"
else
  echo "update-golden: $root has neither lib/default.nix nor default.nix" >&2
  exit 66
fi
nixos=""
for d in "$root/nixos" "$shared/nixos"; do
  [ -f "$d/modules/system/boot/systemd.nix" ] && { nixos="$d"; break; }
done
[ -n "$nixos" ] || { echo "update-golden: no NixOS module files in $root/nixos or $shared/nixos" >&2; exit 66; }
lib_dir="$(cd "$lib_dir" && pwd)"
nixos="$(cd "$nixos" && pwd)"

out=tests/golden/units.json
tmp="$(mktemp)"
store="$(mktemp -d)"
trap 'chmod -R u+w "$store" 2>/dev/null; rm -rf "$tmp" "$store"' EXIT
# --read-write-mode: spec files are written to a store so their content can be read back; a
# private one in a temp dir, so this works without root and leaves /nix/store alone.
nix-instantiate --store "local?root=$store" --eval --strict --json --read-write-mode tests/nix/eval-harness.nix \
  --arg lib "import $lib_dir" \
  --arg nixos "$nixos" \
  --arg configuration ./tests/e2e/configuration.nix \
  -A golden >"$tmp"
mkdir -p tests/golden
node -e 'const fs = require("fs"); const g = JSON.parse(fs.readFileSync(process.argv[1], "utf8")); fs.writeFileSync(process.argv[2], JSON.stringify(g, null, 2) + "\n");' "$tmp" "$out"
echo "update-golden: wrote $out ($(node -e 'const g=require(process.argv[1]); console.log(Object.keys(g.units).length + " units, " + Object.keys(g.files).length + " files")' "$PWD/$out"))"
