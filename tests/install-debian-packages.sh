#!/usr/bin/env bash
# Debian packages the full test suite uses. Run as root; installs only what is missing.
#   nix-bin            nix-instantiate: every .nix file parses, module evaluation
#   systemd-container  systemd-nspawn: the real-systemd end-to-end suite
#   debootstrap        builds that suite's Debian rootfs, bookworm and trixie (cached under /var/cache)
#   debian-archive-keyring, gpgv  verify what debootstrap downloads (only recommended by it)
#   dash               env files must round-trip through dash as well as bash
#   gcc, libc6-dev     the privilege wrapper
#   time               GNU time for peak RSS in benchmarks
#   dpkg-repack        the package e2e test repacks this host's nodejs (>= 20) for bookworm
set -euo pipefail
if [ "$(id -u)" -ne 0 ]; then
  echo "install-debian-packages: not root; skipping package installation (root-only suites will say they are skipped)" >&2
  exit 0
fi
packages=(nix-bin systemd-container debootstrap debian-archive-keyring gpgv dash gcc libc6-dev time util-linux passwd iproute2 ca-certificates dpkg-repack)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ "${#missing[@]}" -eq 0 ]; then
  echo "install-debian-packages: all test packages present"
  exit 0
fi
echo "install-debian-packages: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
