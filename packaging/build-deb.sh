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
set -euo pipefail
[ $# -eq 1 ] || { echo "usage: $0 OUTDIR" >&2; exit 64; }
SRC=$(cd "$(dirname "$0")/.." && pwd)
mkdir -p "$1"
OUT=$(cd "$1" && pwd)

for t in dpkg-buildpackage dh; do
  command -v "$t" >/dev/null || { echo "$0: $t is not installed (apt install dpkg-dev debhelper)" >&2; exit 69; }
done

TMP=$(mktemp -d "${TMPDIR:-/tmp}/rarewatch-deb.XXXXXX")
trap 'rm -rf "$TMP"' EXIT
TREE=$TMP/rarewatch

mkdir "$TREE"
if git -C "$SRC" rev-parse --is-inside-work-tree >/dev/null 2>&1; then
  # Tracked files only: no build directories, no node_modules symlink.
  # Files deleted in the working tree but still tracked are skipped.
  (cd "$SRC" && git ls-files -z --cached | xargs -0 -r sh -c '
     for f; do [ -e "$f" ] || [ -L "$f" ] && printf "%s\0" "$f"; done' sh |
   tar --null -T - -cf -) | tar -xf - -C "$TREE"
else
  tar -C "$SRC" --exclude='./build*' --exclude=./debian --exclude=node_modules -cf - . | tar -xf - -C "$TREE"
fi
rm -rf "$TREE/debian"
cp -a "$SRC/packaging/debian" "$TREE/debian"

# dpkg-buildpackage writes the results into the parent directory ($TMP).
(cd "$TREE" && dpkg-buildpackage -us -uc -b) >&2

shopt -s nullglob
debs=("$TMP"/rarewatch_*.deb)
[ ${#debs[@]} -eq 1 ] || { echo "$0: expected one rarewatch_*.deb, found ${#debs[@]}" >&2; exit 1; }
for f in "$TMP"/*.deb "$TMP"/*.changes "$TMP"/*.buildinfo; do
  cp -f "$f" "$OUT/"
done
echo "$OUT/$(basename "${debs[0]}")"
