#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
#
# Quick host-side check of systemd/rarewatch.service (no root, no container):
#   - `systemd-analyze security --offline=yes` exposure <= 1.5;
#   - `systemd-analyze verify` prints nothing, on a copy of the unit whose
#     ExecStart= is the built rarewatchd and ExecCondition= the built
#     rarewatch (verify wants the binaries to exist).
# systemd-analyze verify exits 0 on most complaints, so the output is checked.
#
#   check_unit.sh UNIT RAREWATCHD [RAREWATCH]
# RAREWATCH defaults to the CLI of the same build directory.
set -uo pipefail
UNIT=$1 DAEMON=$(realpath -e "$2") || exit 1
CLI=$(realpath -e "${3:-$(dirname "$DAEMON")/../rarewatch/rarewatch}") || exit 1
MAX_EXPOSURE=1.5
command -v systemd-analyze >/dev/null || { echo "SKIP: systemd-analyze is not installed"; exit 77; }

pass=0 fail=0
check() { # name status [detail]
  if [ "$2" -eq 0 ]; then echo "ok - $1"; pass=$((pass + 1))
  else echo "FAIL - $1${3:+: $3}"; fail=$((fail + 1)); fi
}

out=$(systemd-analyze security --offline=yes --no-pager "$UNIT" 2>&1)
exposure=$(sed -n 's/.*Overall exposure level for [^:]*: \([0-9.]*\).*/\1/p' <<<"$out")
echo "# exposure: ${exposure:-?}"
awk -v e="${exposure:-99}" -v m="$MAX_EXPOSURE" 'BEGIN { exit !(e + 0 <= m + 0) }'
check "systemd-analyze security --offline=yes exposure <= $MAX_EXPOSURE" $? "${exposure:-$out}"

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
# The copy keeps the unit's name: verify derives the type and the name from it.
sed -e "s|^ExecStart=/usr/sbin/rarewatchd |ExecStart=$DAEMON |" \
    -e "s|^ExecCondition=/usr/bin/rarewatch |ExecCondition=$CLI |" "$UNIT" >"$tmp/rarewatch.service"
grep -q "^ExecStart=$DAEMON " "$tmp/rarewatch.service"
check "the copy's ExecStart= is the built rarewatchd" $? "$(grep ^ExecStart= "$UNIT")"
! grep -q '^Exec[A-Za-z]*=/usr/' "$tmp/rarewatch.service"
check "no Exec*= of the copy names a program under /usr (not installed here)" $? "$(grep '^Exec[A-Za-z]*=/usr/' "$tmp/rarewatch.service")"
out=$(cd "$tmp" && systemd-analyze verify "$tmp/rarewatch.service" 2>&1)
[ -z "$out" ]
check "systemd-analyze verify prints nothing" $? "$out"

echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
