#!/usr/bin/env bash
# Every test that reads a trained toy pool (marker `pool`), on a pool trained with another seed:
#   bash scripts/test_other_pool.sh [SEED]      (default 1; the suite's own pool is seed 0)
# Training amplifies the CPU kernels' last bits, so another machine builds another pool; a test that passes
# here for seed 0 only is a test that fails on a user's machine. CI runs the fast part of this (.ci/run).
set -euo pipefail
cd "$(dirname "$0")/.."
ARM_RAY_TEST_POOL_SEED="${1:-1}" exec .venv/bin/python -m pytest -q -m pool "${@:2}"
