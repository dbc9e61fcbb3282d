#!/bin/sh
# Install the harness's node emulators (kinesis-local, dynalite) from package-lock.json.
# Idempotent: does nothing when node_modules matches the lock file already.
# Needs node and npm on PATH (system packages are the lead's apt step, not here).
set -eu
here=$(cd "$(dirname "$0")" && pwd)
stamp="$here/node_modules/.rarewatch-lock.sha256"

command -v npm >/dev/null 2>&1 || { echo "install-deps.sh: npm is not on PATH" >&2; exit 1; }

want=$(sha256sum "$here/package-lock.json" "$here/package.json" | sha256sum | cut -d' ' -f1)
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ] \
   && [ -f "$here/node_modules/kinesis-local/main.js" ] \
   && [ -f "$here/node_modules/dynalite/cli.js" ]; then
    echo "install-deps.sh: node_modules up to date"
    exit 0
fi

# npm ci removes node_modules first and installs exactly the lock file.
# --ignore-scripts: the only install script in the tree (classic-level's
# node-gyp-build) is for dynalite's on-disk mode, which the harness never uses.
(cd "$here" && npm ci --no-audit --no-fund --ignore-scripts)
echo "$want" > "$stamp"
echo "install-deps.sh: installed kinesis-local $(node -p "require('$here/node_modules/kinesis-local/package.json').version")," \
     "dynalite $(node -p "require('$here/node_modules/dynalite/package.json').version")"
