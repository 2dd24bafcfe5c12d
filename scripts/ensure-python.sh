#!/bin/sh
# A fresh Debian has python3 but not its venv module; install it when we can.
set -eu
python=${1:-python3}
if command -v "$python" >/dev/null 2>&1 && "$python" -c 'import venv, ensurepip' 2>/dev/null; then
  exit 0
fi
if [ "$(id -u)" -ne 0 ] && ! command -v sudo >/dev/null; then
  echo "ensure-python: $python with its venv module is needed: apt-get install python3-venv" >&2
  exit 1
fi
sudo=""; [ "$(id -u)" -ne 0 ] && sudo=sudo
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get -o DPkg::Lock::Timeout=600 -q update
$sudo apt-get -o DPkg::Lock::Timeout=600 -q install -y --no-install-recommends python3 python3-venv python3-pip
