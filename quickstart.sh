#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
#
# The whole pipeline on your machine, no AWS account needed:
#
#   ./quickstart.sh [fraud|web|social|sales]    # default: fraud
#   ./quickstart.sh --check CASE                # non-interactive test mode (the quickstart suite)
#
# Installs what is missing (Debian packages to build rarewatch; moto with pip,
# into a virtual environment, only when python3 has none), builds rarewatch and
# rarewatchd, starts moto on 127.0.0.1:$QUICKSTART_MOTO_PORT (default 4566) as
# Kinesis, Firehose -> S3 and CloudWatch, creates the stream, the delivery
# streams and the alarms, runs rarewatchd in the foreground with
# etc/rarewatch/examples/CASE.conf, replays the case's sample stream with
# `rarewatch put --rate` and shows each anomaly as it is delivered. When the
# stream is through (or after --duration seconds, or on Ctrl-C) it prints a
# summary and stops everything it started. Files: /tmp/rarewatch-quickstart-CASE.
# Options after the case go to tests/usecases/quickstart.py (--help).
set -euo pipefail
cd "$(dirname "$0")"
ROOT=$PWD
BUILD=${RW_BUILD_DIR:-$ROOT/build}
PY=python3

say() { printf '==> %s\n' "$*"; }

# 1. Debian packages to build rarewatch (a subset of tests/setup.sh: no test-only tools).
APT_PACKAGES=(build-essential pkg-config meson ninja-build libcurl4-openssl-dev libssl-dev
  libjson-c-dev libsystemd-dev libinih-dev libprotobuf-c-dev protobuf-c-compiler zlib1g-dev
  libpcre2-dev python3 python3-boto3)
have_moto() { "$1" -c 'import moto.server, boto3' 2>/dev/null; }
VENV=${XDG_CACHE_HOME:-$HOME/.cache}/rarewatch-quickstart/venv
if ! have_moto python3 && ! have_moto "$VENV/bin/python3"; then APT_PACKAGES+=(python3-venv); fi
missing=()
if command -v dpkg-query >/dev/null; then
  for p in "${APT_PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
fi
if ((${#missing[@]})); then
  say "installing Debian packages: ${missing[*]}"
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO=sudo
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# 2. moto (the local AWS): python3's own if it has one, else a virtual environment.
if ! have_moto python3; then
  if ! have_moto "$VENV/bin/python3"; then
    say "installing moto into $VENV (pip)"
    python3 -m venv --system-site-packages "$VENV"
    "$VENV/bin/pip" install -q 'moto[server]' boto3
  fi
  PY=$VENV/bin/python3
fi

# 3. Build the two programs (not the tests: tests/run.sh builds those).
if [ ! -f "$BUILD/build.ninja" ]; then
  say "configuring $BUILD"
  meson setup "$BUILD" >/dev/null
fi
say "building rarewatch and rarewatchd"
meson compile -C "$BUILD" rarewatch rarewatchd >/dev/null

# 4. Run. The driver stops everything it started on every exit path (Ctrl-C included).
exec "$PY" "$ROOT/tests/usecases/quickstart.py" --build "$BUILD" "$@"
