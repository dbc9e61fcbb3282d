#!/bin/sh
# Score the detectors on NAB with their default parameters, one
# configuration for every series.
#
#   tests/quality/run_nab.sh BUILDDIR [NAB_ROOT] [DETECTOR...]
#
# NAB_ROOT defaults to ../shared/data/nab-dev beside the repository (or
# $RW_NAB_ROOT); detectors default to "auto auto-nots zscore quantile"
# (auto-nots: auto without timestamps, i.e. no time-of-day view). Prints
# one NAB_SCORE line per detector.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
top=$(cd "$here/../.." && pwd)
build=${1:?usage: run_nab.sh BUILDDIR [NAB_ROOT] [DETECTOR...]}
shift
nab=${RW_NAB_ROOT:-$top/../shared/data/nab-dev}
if [ $# -gt 0 ] && [ -d "$1" ]; then
    nab=$1
    shift
fi
runner=${RW_NAB_RUNNER:-$top/../shared/tools/nab/run_nab.sh}
drv=$(cd "$build" && pwd)/tests/quality/nab_stream
[ -x "$drv" ] || { echo "no $drv: build first" >&2; exit 1; }
[ $# -gt 0 ] || set -- auto auto-nots zscore quantile
for d in "$@"; do
    case $d in
    auto-nots) cmd="$drv -d auto -T" ;;
    *) cmd="$drv -d $d" ;;
    esac
    "$runner" --name "$d" "$nab" "$cmd" | grep '^NAB_SCORE'
done
