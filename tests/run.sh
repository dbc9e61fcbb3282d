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
# Long runs (fuzzing for minutes, soak and churn tests) are not here: see
# tests/long.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
BUILD=${RW_BUILD_DIR:-$ROOT/build-ci}
ASAN=${RW_ASAN_BUILD_DIR:-$ROOT/build-ci-asan}

log() { printf '\n==> %s\n' "$*"; }

# 1. Packages. Only what is missing is installed, so a warm machine skips it.
APT_PACKAGES=(
  build-essential pkg-config meson ninja-build
  libcurl4-openssl-dev libssl-dev libjson-c-dev libsystemd-dev libinih-dev
  libprotobuf-c-dev protobuf-c-compiler zlib1g-dev libpcre2-dev
  clang libclang-rt-14-dev
  python3 python3-boto3 nodejs npm
  systemd systemd-container debootstrap
)
missing=()
for p in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  log "installing: ${missing[*]}"
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO=sudo
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

# 2. Node emulators for the integration tests (kinesis-local, dynalite).
if [ -x tests/harness/install-deps.sh ]; then
  log "emulator packages"
  tests/harness/install-deps.sh
fi

# 3. Build with -Werror, and with ASan+UBSan.
log "build (-Werror)"
[ -d "$BUILD" ] || meson setup "$BUILD" -Dwerror=true -Dbuildtype=debugoptimized >/dev/null
meson compile -C "$BUILD"
log "build (ASan+UBSan)"
[ -d "$ASAN" ] || meson setup "$ASAN" -Dwerror=true -Db_sanitize=address,undefined -Db_lundef=false \
  -Dbuildtype=debug -Dbenchmarks=false >/dev/null
meson compile -C "$ASAN"

# 4. Suites. The sanitizer build runs the unit and lifecycle tests (and the
#    fuzz corpora); the normal build runs everything.
export ASAN_OPTIONS=detect_leaks=1:abort_on_error=1:strict_string_checks=1
export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
log "tests (ASan+UBSan): unit, lifecycle, fuzz corpora"
meson test -C "$ASAN" --print-errorlogs --num-processes 2 --suite unit --suite lifecycle --suite fuzz "$@"
log "tests: all default suites"
meson test -C "$BUILD" --print-errorlogs --num-processes 2 --no-suite bench --no-suite long "$@"
