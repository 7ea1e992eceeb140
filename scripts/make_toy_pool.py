"""Build the trained toy pool of configs/demo.yaml, then check its gate on an ARM run over it.

    python scripts/make_toy_pool.py [--config configs/demo.yaml] [--run runs/demo]   # build, run ARM, gate
    python scripts/make_toy_pool.py --out DIR [--preset demo|tests] [--seed 0]       # build only

The pool is built (or found in its cache) where the config's `prepare` says;
the script prints its table (scores of the base and experts, task-vector sizes,
the midpoint probe). With a config it then runs ARM on it (`arm_ray.main`, with
dev diagnosis and every candidate in the results table) and prints the gate
(`arm_ray.toy.gate`): experts, retention of the merges, the base out of domain,
headroom on dev. Exits 1 when the demo preset misses its gate.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from arm_ray import logs
from arm_ray.experts.scoring import check_gate
from arm_ray.toy import gate
from arm_ray.toy.trained import PRESETS, build_trained_pool, pool_table


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", default=None, help="build the pool its `prepare` names, run it, check the gate")
    ap.add_argument("--run", default="runs/demo", help="run directory for the gate's ARM run (default runs/demo)")
    ap.add_argument("--out", default=None, help="build only, into this directory")
    ap.add_argument("--preset", default="demo", choices=sorted(PRESETS))
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    logs.setup()
    if args.out is None and args.config is None:
        args.config = "configs/demo.yaml"
    if args.out is not None:
        out = build_trained_pool(args.out, args.preset, seed=args.seed)
        print(pool_table(Path(out)))
        problems = check_gate(json.loads((Path(out) / "scores.json").read_text()))
        print("build gate: PASS" if not problems else "build gate: FAIL\n  " + "\n  ".join(problems))
        return 0 if not problems or args.preset != "demo" else 1

    from arm_ray import main as arm_main

    report = arm_main.run(["--config", args.config, "--output", args.run, "--overwrite"])
    from arm_ray.config import load_config

    out = Path(load_config(args.config).prepare.args["out"])
    print("\n## The pool\n\n" + pool_table(out))
    checks = gate.from_report(report)
    print("\n## Gate (test and dev rollouts of the ARM run in " + args.run + ")\n\n" + gate.table(checks))
    ok = all(c.passed for c in checks)
    print("\ngate: PASS" if ok else "\ngate: FAIL")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
