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
# Kinesis, Firehose -> S3 and CloudWatch (IAM auth on), deploys
# packaging/aws/cloudformation.yaml to it (stream, bucket, delivery streams,
# alarms), runs rarewatchd in the foreground with
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

# 1. Debian packages to build rarewatch (tests/setup.sh's build subset: no test tools,
#    no Node emulators), and python3-venv when moto has to come from pip.
have_moto() { "$1" -c 'import moto.server, boto3' 2>/dev/null; }
VENV=${XDG_CACHE_HOME:-$HOME/.cache}/rarewatch-quickstart/venv
extra=()
if ! have_moto python3 && ! have_moto "$VENV/bin/python3"; then extra+=(python3-venv); fi
if command -v dpkg-query >/dev/null; then
  tests/setup.sh --build-only "${extra[@]}"
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
