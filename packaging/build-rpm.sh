#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
#
# Build the RPM of rarewatch from this source tree with rpmbuild:
#
#   packaging/build-rpm.sh OUTDIR
#
# Makes rarewatch-VERSION.tar.gz from the git-tracked files (working tree
# content, like build-deb.sh; a plain copy outside git), runs rpmbuild -ba
# with packaging/rpm/rarewatch.spec in a temporary topdir, and leaves the
# binary and source RPMs in OUTDIR. The last line on stdout is the path of
# the binary rarewatch-*.rpm; the build's output goes to stderr.
#
# On a machine without an RPM database of the build dependencies (Debian's
# rpm package) the dependency check is skipped (--nodeps) and no debuginfo
# package is made (Debian's rpm has no find-debuginfo).
set -euo pipefail
[ $# -eq 1 ] || { echo "usage: $0 OUTDIR" >&2; exit 64; }
SRC=$(cd "$(dirname "$0")/.." && pwd)
SPEC=$SRC/packaging/rpm/rarewatch.spec
mkdir -p "$1"
OUT=$(cd "$1" && pwd)
command -v rpmbuild >/dev/null || { echo "$0: rpmbuild is not installed (apt install rpm)" >&2; exit 69; }

VERSION=$(sed -n 's/^Version:[[:space:]]*//p' "$SPEC")
TMP=$(mktemp -d "${TMPDIR:-/tmp}/rarewatch-rpm.XXXXXX")
trap 'rm -rf "$TMP"' EXIT
mkdir -p "$TMP"/{BUILD,BUILDROOT,RPMS,SOURCES,SPECS,SRPMS}

if git -C "$SRC" rev-parse --is-inside-work-tree >/dev/null 2>&1; then
  (cd "$SRC" && git ls-files -z --cached | xargs -0 -r sh -c '
     for f; do [ -e "$f" ] || [ -L "$f" ] && printf "%s\0" "$f"; done' sh |
   tar --null -T - --transform "s,^,rarewatch-$VERSION/," -czf "$TMP/SOURCES/rarewatch-$VERSION.tar.gz")
else
  tar -C "$SRC" --exclude='./build*' --exclude=./debian --exclude=node_modules \
    --transform "s,^\.,rarewatch-$VERSION," -czf "$TMP/SOURCES/rarewatch-$VERSION.tar.gz" .
fi

args=(--define "_topdir $TMP")
if ! rpm -q rpm >/dev/null 2>&1; then   # no RPM database: not an RPM distribution
  args+=(--nodeps --define "debug_package %{nil}")
fi
rpmbuild -ba "${args[@]}" "$SPEC" >&2

shopt -s nullglob
rpms=("$TMP"/RPMS/*/rarewatch-"$VERSION"-*.rpm)
[ ${#rpms[@]} -eq 1 ] || { echo "$0: expected one binary rarewatch RPM, found ${#rpms[@]}" >&2; exit 1; }
cp -f "$TMP"/RPMS/*/*.rpm "$TMP"/SRPMS/*.rpm "$OUT/"
echo "$OUT/$(basename "${rpms[0]}")"
