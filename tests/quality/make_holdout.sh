#!/bin/sh
# Build a NAB-layout holdout set: every NAB series that is NOT in the dev
# subset the detectors were developed on (../shared/data/nab-dev), so their
# scores can be checked on data nobody tuned against.
#
#   tests/quality/make_holdout.sh NAB_CHECKOUT OUTDIR [DEV_ROOT]
#
# NAB_CHECKOUT: a clone of github.com/numenta/NAB (data/, labels/, config/).
# Then: tests/quality/run_nab.sh BUILDDIR OUTDIR
set -eu
nab=${1:?usage: make_holdout.sh NAB_CHECKOUT OUTDIR [DEV_ROOT]}
out=${2:?usage: make_holdout.sh NAB_CHECKOUT OUTDIR [DEV_ROOT]}
here=$(cd "$(dirname "$0")" && pwd)
dev=${3:-$here/../../../shared/data/nab-dev}
exec python3 - "$nab" "$out" "$dev" <<'PY'
import json, os, shutil, sys
nab, out, dev = sys.argv[1:4]
allw = json.load(open(os.path.join(nab, "labels", "combined_windows.json")))
devw = json.load(open(os.path.join(dev, "labels", "combined_windows.json")))
hold = {k: v for k, v in allw.items() if k not in devw}
for k in hold:
    os.makedirs(os.path.join(out, "data", os.path.dirname(k)), exist_ok=True)
    shutil.copyfile(os.path.join(nab, "data", k), os.path.join(out, "data", k))
os.makedirs(os.path.join(out, "labels"), exist_ok=True)
os.makedirs(os.path.join(out, "config"), exist_ok=True)
json.dump(hold, open(os.path.join(out, "labels", "combined_windows.json"), "w"), indent=1)
shutil.copyfile(os.path.join(nab, "config", "profiles.json"), os.path.join(out, "config", "profiles.json"))
print("%d series (of %d; %d in the dev set)" % (len(hold), len(allw), len(devw)))
PY
