#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Install what building and testing rarewatch needs on Debian 12 (idempotent:
# only missing packages are installed), then the Node emulators.
set -euo pipefail
cd "$(dirname "$0")/.."
APT_PACKAGES=(
  build-essential pkg-config meson ninja-build
  libcurl4-openssl-dev libssl-dev libjson-c-dev libsystemd-dev libinih-dev
  libprotobuf-c-dev protobuf-c-compiler zlib1g-dev libpcre2-dev
  clang libclang-rt-14-dev
  python3 python3-boto3
  systemd systemd-container debootstrap
)
# Node may come from elsewhere than Debian (with its own npm): take what is there.
command -v node >/dev/null && command -v npm >/dev/null || APT_PACKAGES+=(nodejs npm)
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
# moto (the AWS emulator with IAM-checked SigV4) comes with the machine's
# Python; elsewhere: pip install 'moto[server]'.
python3 -c 'import moto, boto3' 2>/dev/null || {
  echo "tests/setup.sh: python3 lacks moto/boto3 (pip install 'moto[server]' boto3)" >&2; exit 1; }
# cfn-lint checks packaging/aws/cloudformation.yaml against AWS's resource
# specification (tests/integration/test_aws_artifacts.py); PyYAML reads it.
python3 -c 'import cfnlint, yaml' 2>/dev/null || {
  echo "tests/setup.sh: python3 lacks cfn-lint/PyYAML (pip install cfn-lint pyyaml)" >&2; exit 1; }
tests/harness/install-deps.sh
