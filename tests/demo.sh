#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Run rarewatchd's main job locally: build, start the local emulators, and
# run the daemon in the foreground on the sample configuration. Ctrl-C stops.
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD=${RW_BUILD_DIR:-build}
[ -d "$BUILD" ] || meson setup "$BUILD" >/dev/null
meson compile -C "$BUILD" >/dev/null
CONF=${1:-etc/rarewatch/rarewatch.conf}
"$BUILD/src/rarewatch/rarewatch" check-config -c "$CONF"
echo "rarewatchd: starting on $CONF (Ctrl-C to stop)"
exec "$BUILD/src/rarewatchd/rarewatchd" -c "$CONF"
