#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
#
# The test command: on a fresh Debian 12 machine (as root, or with sudo) it
# installs what the build and the tests need, builds twice (a -Werror build
# and an ASan+UBSan build), and runs every default suite. .ci/run runs it.
#
#   tests/run.sh                 # everything CI runs
#   tests/run.sh --suite unit    # extra arguments go to `meson test` (both builds)
#
# The suite 'long' (lease churn, ~11 minutes) runs last; RW_SKIP_LONG=1 skips it.
# Fuzzing for minutes and the benchmarks have their own commands (README).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
BUILD=${RW_BUILD_DIR:-$ROOT/build-ci}
ASAN=${RW_ASAN_BUILD_DIR:-$ROOT/build-ci-asan}

log() { printf '\n==> %s\n' "$*"; }

# 1. Packages (apt, only what is missing) and the Node emulators.
log "dependencies"
tests/setup.sh

# 2. Build with -Werror, and with ASan+UBSan.
log "build (-Werror)"
[ -d "$BUILD" ] || meson setup "$BUILD" -Dwerror=true -Dbuildtype=debugoptimized >/dev/null
meson compile -C "$BUILD"
log "build (ASan+UBSan)"
[ -d "$ASAN" ] || meson setup "$ASAN" -Dwerror=true -Db_sanitize=address,undefined -Db_lundef=false \
  -Dbuildtype=debug -Dbenchmarks=false >/dev/null
meson compile -C "$ASAN"

# 3. Suites. The sanitizer build runs the unit and lifecycle tests (and the
#    fuzz corpora); the normal build runs everything.
export ASAN_OPTIONS=detect_leaks=1:abort_on_error=1:strict_string_checks=1
export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
log "tests (ASan+UBSan): unit, lifecycle, fuzz corpora"
meson test -C "$ASAN" --print-errorlogs --num-processes 2 --suite unit --suite lifecycle --suite fuzz "$@"
log "tests: all default suites"
# The packaging suite builds the .deb once for these sources; the system
# suite installs that same package instead of building it again.
export RW_DEB_CACHE=$BUILD/deb-cache
meson test -C "$BUILD" --print-errorlogs --num-processes 2 --no-suite bench --no-suite long "$@"
# The long suite (10 minutes of instances churning over shared leases) runs
# last, in CI too; RW_SKIP_LONG=1 skips it for a quick local run.
if [ -z "${RW_SKIP_LONG:-}" ] && [ $# -eq 0 ]; then
  log "tests: long suite"
  meson test -C "$BUILD" --print-errorlogs --suite long
fi
