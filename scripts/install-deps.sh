#!/usr/bin/env bash
# Installs what detrec needs from Debian's packages (once: skipped when present).
set -euo pipefail
packages=(libelf-dev libdw-dev libzstd-dev libcapstone-dev pkg-config gcc libc6-dev)
if dpkg -s "${packages[@]}" >/dev/null 2>&1; then exit 0; fi
sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"
$sudo apt-get update -qq
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${packages[@]}"
