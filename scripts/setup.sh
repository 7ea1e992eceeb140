#!/usr/bin/env bash
# Create .venv and install arm-ray with its test extra. torch is pinned to 2.13.0,
# whose CPU wheel is installed first so nothing pulls a CUDA build.
set -euo pipefail
cd "$(dirname "$0")/.."
[ -x .venv/bin/python ] || python3 -m venv .venv
. .venv/bin/activate
python -m pip install -q --upgrade pip
python -m pip install -q torch==2.13.0
python -m pip install -q -e ".[test]"
