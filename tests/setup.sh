#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Install what building and testing rarewatch needs on Debian 12 (idempotent:
# only missing packages are installed), then the Node emulators.
#
#   tests/setup.sh                          # build + test (tests/run.sh)
#   tests/setup.sh --build-only [PKG...]    # build only, plus PKG (./quickstart.sh)
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD_PACKAGES=(
  build-essential pkg-config meson ninja-build
  libcurl4-openssl-dev libssl-dev libjson-c-dev libsystemd-dev libinih-dev
  libprotobuf-c-dev protobuf-c-compiler zlib1g-dev libpcre2-dev
  python3 python3-boto3
)
TEST_PACKAGES=(clang libclang-rt-14-dev systemd systemd-container debootstrap
  debhelper dpkg-dev fakeroot lintian rpm man-db groff-base)
build_only=
if [ "${1:-}" = --build-only ]; then
  build_only=1
  shift
  APT_PACKAGES=("${BUILD_PACKAGES[@]}" "$@")
else
  APT_PACKAGES=("${BUILD_PACKAGES[@]}" "${TEST_PACKAGES[@]}")
  # Node may come from elsewhere than Debian (with its own npm): take what is there.
  command -v node >/dev/null && command -v npm >/dev/null || APT_PACKAGES+=(nodejs npm)
fi
missing=()
for p in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "==> installing: ${missing[*]}"
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO=sudo
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi
[ -z "$build_only" ] || exit 0
# moto (the AWS emulator with IAM-checked SigV4) comes with the machine's
# Python; elsewhere: pip install 'moto[server]'.
python3 -c 'import moto, boto3' 2>/dev/null || {
  echo "tests/setup.sh: python3 lacks moto/boto3 (pip install 'moto[server]' boto3)" >&2; exit 1; }
# cfn-lint checks packaging/aws/cloudformation.yaml against AWS's resource
# specification (tests/integration/test_aws_artifacts.py); PyYAML reads it.
python3 -c 'import cfnlint, yaml' 2>/dev/null || {
  echo "tests/setup.sh: python3 lacks cfn-lint/PyYAML (pip install cfn-lint pyyaml)" >&2; exit 1; }
tests/harness/install-deps.sh
