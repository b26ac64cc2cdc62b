#!/usr/bin/env bash
# Install Debian packages for the build: `apt-get update`, then `apt-get
# install -y PACKAGE...`. Another package manager at work (an unattended
# upgrade, a second `make` in another checkout) holds apt's locks for a
# while; instead of failing at once, each step waits for them, up to
# APT_LOCK_WAIT seconds in all (default 300), then fails as apt-get does.
#
#   mk/apt-install.sh [--no-install-recommends] PACKAGE...
set -uo pipefail
limit=${APT_LOCK_WAIT:-300}
end=$((SECONDS + limit))
log=$(mktemp)
trap 'rm -f "$log"' EXIT

# apt-get "$@", again while it fails on a lock another process holds.
# DPkg::Lock::Timeout makes apt wait for dpkg's lock itself; the lists lock
# of `apt-get update` is waited for here.
apt() {
  local said=
  while :; do
    local left=$((end - SECONDS))
    apt-get -o DPkg::Lock::Timeout=$((left > 0 ? left : 0)) "$@" 2>&1 | tee "$log"
    local rc=$?
    [ "$rc" -eq 0 ] && return 0
    grep -Eq 'Could not get lock|Unable to (lock|acquire)' "$log" && [ "$SECONDS" -lt "$end" ] \
      || return "$rc"
    [ -n "$said" ] || echo "apt-install: another package manager holds apt's lock;" \
      "waiting for it (up to ${limit} s in all)" >&2
    said=1
    sleep 1
  done
}

apt update && apt install -y "$@"
