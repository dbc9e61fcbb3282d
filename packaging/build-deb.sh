#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
#
# Build the Debian package of rarewatch from this source tree:
#
#   packaging/build-deb.sh OUTDIR
#
# Copies the git-tracked files (with the working tree's content, so
# uncommitted edits are packaged too; a plain copy when this is not a git
# checkout) into a temporary directory, puts packaging/debian at ./debian
# there (never in the checkout), runs `dpkg-buildpackage -us -uc -b`, and
# leaves the .deb (and the .changes/.buildinfo) in OUTDIR. The last line on
# stdout is the path of rarewatch_*.deb (tests/system relies on that); the
# build's own output goes to stderr.
#
# RW_DEB_CACHE=DIR: reuse the package built from identical sources (the
# tracked files' names, modes and content) instead of building it again; the
# packaging and system test suites share one build that way (tests/run.sh).
set -euo pipefail
[ $# -eq 1 ] || { echo "usage: $0 OUTDIR" >&2; exit 64; }
SRC=$(cd "$(dirname "$0")/.." && pwd)
mkdir -p "$1"
OUT=$(cd "$1" && pwd)

for t in dpkg-buildpackage dh; do
  command -v "$t" >/dev/null || { echo "$0: $t is not installed (apt install dpkg-dev debhelper)" >&2; exit 69; }
done

# The git-tracked files that exist in the working tree, NUL-separated.
tracked() {
  (cd "$SRC" && git ls-files -z --cached | xargs -0 -r sh -c '
     for f; do [ -e "$f" ] || [ -L "$f" ] && printf "%s\0" "$f"; done' sh)
}
in_git() { git -C "$SRC" rev-parse --is-inside-work-tree >/dev/null 2>&1; }

deliver() { # DIR: copy its packages to OUT, print the .deb's path
  local f debs=("$1"/rarewatch_*.deb)
  [ ${#debs[@]} -eq 1 ] && [ -f "${debs[0]}" ] ||
    { echo "$0: expected one rarewatch_*.deb in $1, found ${#debs[@]}" >&2; exit 1; }
  for f in "$1"/*.deb "$1"/*.changes "$1"/*.buildinfo; do
    [ -f "$f" ] && cp -f "$f" "$OUT/"
  done
  echo "$OUT/$(basename "${debs[0]}")"
}

if [ -n "${RW_DEB_CACHE:-}" ] && in_git; then
  mkdir -p "$RW_DEB_CACHE"
  exec 8>"$RW_DEB_CACHE/.lock"
  flock -w 1800 8 || { echo "$0: timed out waiting for $RW_DEB_CACHE/.lock" >&2; exit 1; }
  key=$( (cd "$SRC" && tracked | xargs -0 -r stat -c '%n %a' && tracked | xargs -0 -r sha256sum) |
         sha256sum | cut -c1-16)
  if [ -f "$RW_DEB_CACHE/$key/.complete" ]; then
    echo "build-deb.sh: reusing the package built from these sources ($RW_DEB_CACHE/$key)" >&2
    deliver "$RW_DEB_CACHE/$key"
    exit 0
  fi
fi

TMP=$(mktemp -d "${TMPDIR:-/tmp}/rarewatch-deb.XXXXXX")
trap 'rm -rf "$TMP"' EXIT
TREE=$TMP/rarewatch

mkdir "$TREE"
if in_git; then
  # Tracked files only: no build directories, no node_modules symlink.
  # Files deleted in the working tree but still tracked are skipped.
  (cd "$SRC" && tracked | tar --null -T - -cf -) | tar -xf - -C "$TREE"
else
  tar -C "$SRC" --exclude='./build*' --exclude=./debian --exclude=node_modules -cf - . | tar -xf - -C "$TREE"
fi
rm -rf "$TREE/debian"
cp -a "$SRC/packaging/debian" "$TREE/debian"

# dpkg-buildpackage writes the results into the parent directory ($TMP).
(cd "$TREE" && dpkg-buildpackage -us -uc -b) >&2

shopt -s nullglob
if [ -n "${key:-}" ]; then
  # Keep only this build in the cache.
  find "$RW_DEB_CACHE" -mindepth 1 -maxdepth 1 -type d -exec rm -rf {} +
  mkdir "$RW_DEB_CACHE/$key"
  cp "$TMP"/*.deb "$TMP"/*.changes "$TMP"/*.buildinfo "$RW_DEB_CACHE/$key/"
  touch "$RW_DEB_CACHE/$key/.complete"
fi
deliver "$TMP"
