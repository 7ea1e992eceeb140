#!/usr/bin/env bash
# Create .venv and install arm-ray with its test extra. torch is pinned to 2.13.0,
# whose CPU wheel is installed first so nothing pulls a CUDA build.
# The shell suite runs model commands only inside bubblewrap: install it when missing
# (Debian/Ubuntu package `bubblewrap`; needs root or sudo).
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v bwrap >/dev/null 2>&1; then
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  if command -v apt-get >/dev/null 2>&1; then
    $SUDO apt-get install -y -qq bubblewrap >/dev/null 2>&1 \
      || { $SUDO apt-get update -qq >/dev/null && $SUDO apt-get install -y -qq bubblewrap >/dev/null; }
  else
    echo "setup: install bubblewrap (bwrap) with your package manager; the shell suite needs it" >&2
  fi
fi
[ -x .venv/bin/python ] || python3 -m venv .venv
. .venv/bin/activate
python -m pip install -q --upgrade pip
python -m pip install -q torch==2.13.0
python -m pip install -q -e ".[test]"
