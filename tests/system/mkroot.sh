#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
#
# Build (or reuse) a minimal Debian 12 root for the system tests and print its
# path on stdout. The root is keyed by a hash of what goes into it, cached
# under $RW_ROOTFS_CACHE (default /var/cache/rarewatch-test), built into a
# temporary directory and renamed into place, under a lock, so concurrent runs
# either wait for one build or reuse it. Nothing ever writes into a finished
# root: the tests boot it through an overlay.
#
# The Debian mirror is the machine's own, read from its apt sources at run
# time (deb822 *.sources first, then sources.list); an apt proxy, if
# configured, is honoured.
#
#   tests/system/mkroot.sh          # prints /var/cache/rarewatch-test/rootfs-<hash>
set -euo pipefail

SUITE=bookworm
ARCH=$(dpkg --print-architecture)
CACHE=${RW_ROOTFS_CACHE:-/var/cache/rarewatch-test}
# What rarewatchd and rarewatch link against (ldd, mapped to packages; the
# test re-checks with ldd inside the container), an init, and procps.
PACKAGES=(
  systemd systemd-sysv dbus libnss-systemd
  libcurl4 libjson-c5 libinih1 libprotobuf-c1 libssl3 zlib1g libsystemd0 libpcre2-8-0
  procps
)
# Bump when the preparation below changes: old roots are then rebuilt.
RECIPE=2

log() { printf 'mkroot: %s\n' "$*" >&2; }
die() { log "$*"; exit 1; }

[ "$(id -u)" -eq 0 ] || die "must run as root"
command -v debootstrap >/dev/null || die "debootstrap is not installed"

key=$(printf '%s\n' "recipe=$RECIPE" "suite=$SUITE" "arch=$ARCH" "${PACKAGES[@]}" |
      sha256sum | cut -c1-16)
ROOT=$CACHE/rootfs-$key

# The mirror for $SUITE from the machine's apt configuration.
find_mirror() {
  local f uri
  shopt -s nullglob
  for f in /etc/apt/sources.list.d/*.sources; do
    # deb822 stanzas: the first "Types: deb" stanza whose Suites has $SUITE.
    uri=$(awk -v suite="$SUITE" '
      function flush() { if (deb && has && uri != "") { print uri; found = 1; exit } deb = has = 0; uri = "" }
      /^[[:space:]]*$/ { flush(); next }
      /^[[:space:]]*#/ { next }
      tolower($1) == "types:"  { for (i = 2; i <= NF; i++) if ($i == "deb") deb = 1 }
      tolower($1) == "suites:" { for (i = 2; i <= NF; i++) if ($i == suite) has = 1 }
      tolower($1) == "uris:"   { uri = $2 }
      END { if (!found) flush() }' "$f")
    [ -n "$uri" ] && { echo "$uri"; return; }
  done
  for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
    [ -f "$f" ] || continue
    # deb [options] URI SUITE components...
    uri=$(awk -v suite="$SUITE" '
      $1 == "deb" { i = 2; if ($i ~ /^\[/) { while ($i !~ /\]$/) i++; i++ }
                    if ($(i + 1) == suite) { print $i; exit } }' "$f")
    [ -n "$uri" ] && { echo "$uri"; return; }
  done
  return 1
}

mkdir -p "$CACHE"
exec 9>"$CACHE/.lock"
# A cold build takes a minute or two; a concurrent run waits for it.
flock -w 900 9 || die "timed out waiting for $CACHE/.lock"

if [ -f "$ROOT/.rarewatch-rootfs-complete" ]; then
  log "reusing $ROOT"
  echo "$ROOT"
  exit 0
fi

MIRROR=$(find_mirror) || die "no deb source for $SUITE in /etc/apt/sources.list{,.d/*}"
eval "$(apt-config shell http_proxy Acquire::http::Proxy https_proxy Acquire::https::Proxy)"
[ -n "${http_proxy:-}" ] && export http_proxy
[ -n "${https_proxy:-}" ] && export https_proxy

# debootstrap mounts /proc and /sys inside the target: an interrupted build
# may leave them behind. Unmount, deepest first, before removing anything.
remove_build() {
  local d
  for d in "$@"; do
    [ -d "$d" ] || continue
    findmnt -rn -o TARGET | awk -v p="$d/" 'index($0, p) == 1' | sort -r |
      while read -r m; do umount "$m" 2>/dev/null || umount --lazy "$m"; done
    rm -rf --one-file-system "$d"
  done
}
# Leftovers of an interrupted build (we hold the lock: nobody else is building).
shopt -s nullglob
remove_build "$CACHE"/.build-*
TMP=$(mktemp -d "$CACHE/.build-$key.XXXXXX")
trap 'remove_build "$TMP"' EXIT

log "debootstrap $SUITE ($ARCH) from $MIRROR into $TMP"
keyring=()
[ -f /usr/share/keyrings/debian-archive-keyring.gpg ] &&
  keyring=(--keyring=/usr/share/keyrings/debian-archive-keyring.gpg)
started=$SECONDS
if ! debootstrap --variant=minbase --arch="$ARCH" "${keyring[@]}" \
     --include="$(IFS=,; echo "${PACKAGES[*]}")" \
     "$SUITE" "$TMP/root" "$MIRROR" >"$TMP/debootstrap.log" 2>&1; then
  tail -n 30 "$TMP/debootstrap.log" >&2
  [ -f "$TMP/root/debootstrap/debootstrap.log" ] && tail -n 30 "$TMP/root/debootstrap/debootstrap.log" >&2
  die "debootstrap failed"
fi
R=$TMP/root

# An empty machine-id: every boot gets a fresh transient one, so containers
# booted from this root at the same time do not share journal ids.
: >"$R/etc/machine-id"
rm -f "$R/var/lib/dbus/machine-id"
echo rarewatch-test >"$R/etc/hostname"
# Nothing inside needs a login prompt or the network configured; fewer units,
# faster boot. The apt caches only take space.
for u in console-getty.service getty@.service systemd-networkd.service \
         systemd-resolved.service systemd-timesyncd.service apt-daily.timer \
         apt-daily-upgrade.timer e2scrub_all.timer fstrim.timer; do
  ln -sf /dev/null "$R/etc/systemd/system/$u"
done
rm -rf "$R"/var/cache/apt/archives/*.deb "$R"/var/lib/apt/lists/*
printf '%s\n' "${PACKAGES[@]}" >"$R/.rarewatch-rootfs-packages"
touch "$R/.rarewatch-rootfs-complete"

mv -T "$R" "$ROOT"
log "built $ROOT in $((SECONDS - started))s"
echo "$ROOT"
