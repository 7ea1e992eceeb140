"""Build the trained toy pool of configs/demo.yaml (tokenizer, base, one expert per in-domain suite, data, scores).

    python scripts/make_toy_pool.py --out runs/_trained_pool [--preset demo|tests] [--seed 0]
Cached by its inputs: a second run with the same arguments returns at once.
Prints the score table and whether the pool passes the gate (issue 4).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from arm_ray import logs
from arm_ray.toy.trained import PRESETS, build_trained_pool, check_gate, score_table


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", required=True)
    ap.add_argument("--preset", default="demo", choices=sorted(PRESETS))
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    logs.setup()
    out = build_trained_pool(args.out, args.preset, seed=args.seed)
    scores = json.loads((Path(out) / "scores.json").read_text())
    print(score_table(scores))
    problems = check_gate(scores)
    print("gate: PASS" if not problems else "gate: FAIL\n  " + "\n  ".join(problems))
    return 0 if not problems or args.preset != "demo" else 1


if __name__ == "__main__":
    sys.exit(main())
