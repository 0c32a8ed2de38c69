#!/bin/sh
# e2e-probe NAME — stands in for a real daemon. At start it reports, one journal line each,
# what the service sees: ids, environment, its secret files (mode, owner, sha256, or
# "unreadable"), and which credentials it can read. Then it idles like a daemon.
# Values are reported as hashes or base64 so the test compares bytes, not text.
name=$1
say() { printf 'e2e-probe %s %s\n' "$name" "$*"; }

say "id uid=$(id -u) gid=$(id -g) groups=$(id -G | tr ' ' ,)"
say "environ $(base64 -w0 /proc/self/environ)"
for d in "/run/$name-secrets" "/run/$name" ${RUNTIME_DIRECTORY:+"$RUNTIME_DIRECTORY"}; do
  [ -d "$d" ] || continue
  for f in "$d"/* "$d"/.[!.]*; do
    [ -e "$f" ] || [ -L "$f" ] || continue
    if [ -r "$f" ] && [ -f "$f" ]; then h=$(sha256sum <"$f" | cut -d' ' -f1); else h=unreadable; fi
    say "file $f $(stat -c '%a %u %g' "$f") $h"
  done
done
for d in /run/credentials/*/; do
  [ -d "$d" ] || continue
  for f in "$d"*; do
    if [ -e "$f" ] && cat "$f" >/dev/null 2>&1; then say "credential readable $f"; else say "credential denied $f"; fi
  done
done
if [ -n "$CREDENTIALS_DIRECTORY" ]; then say "credentials-directory $CREDENTIALS_DIRECTORY"; fi
# Best effort copy for humans poking at a kept container (HOMELAB_E2E_KEEP=1).
if mkdir -p "/var/lib/e2e-evidence/$name" 2>/dev/null; then
  cp /proc/self/environ "/var/lib/e2e-evidence/$name/environ" 2>/dev/null
  id >"/var/lib/e2e-evidence/$name/id" 2>/dev/null
fi
say ready
exec sleep infinity
