"""One config on several builds of its pool: the headline numbers with their spread over builds.

    python scripts/over_builds.py --config configs/smollm2.yaml --seeds 0 1 2 [--full 0 ...]

A pool is one draw: its experts' SFT batches (and the run's sampling) come from a seed. For each seed this
builds the pool the config's `prepare` names into `<out>_s<seed>` (cached by its inputs), runs ARM on it into
`runs/<name>_s<seed>` (resumed if stopped) and reads the run's report.json. The `--full` seeds evaluate every
candidate on test (the best merge; what `arm_ray.analyze` needs); the others evaluate base, experts, the
AOS-selected backbone and ARM only, and skip the role-agnostic traces, which saves about half the run.

Writes `runs/<name>_builds/summary.md` and `summary.json`: per build and as mean [min, max] over builds, base
and each expert on its own suite, the best merge, the backbone, ARM and ARM - backbone (AVG over the evaluated
benchmarks, with that build's paired 95 % interval).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import yaml

from arm_ray.atomic import atomic_write_text as write_text
from arm_ray.builds import build_config, headline, summary_md


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", default="configs/smollm2.yaml")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--full", type=int, nargs="+", default=[0],
                    help="the seeds that evaluate every candidate on test (default: the first seed 0)")
    ap.add_argument("--runs", default="runs")
    args = ap.parse_args()
    cfg = yaml.safe_load(Path(args.config).read_text())
    if not isinstance(cfg, dict) or "args" not in (cfg.get("prepare") or {}) or "out" not in cfg["prepare"]["args"]:
        print(f"{args.config}: expected a config whose prepare.args.out names the pool directory", file=sys.stderr)
        return 2
    where = Path(args.runs) / f"{cfg['name']}_builds"
    where.mkdir(parents=True, exist_ok=True)
    builds = {}
    for seed in args.seeds:
        one = build_config(cfg, seed, seed in args.full)
        path = where / f"s{seed}.yaml"
        write_text(path, yaml.safe_dump(one, sort_keys=False))
        run_dir = Path(args.runs) / one["name"]
        if not (run_dir / "report.json").is_file():
            print(f"== build seed {seed}: {path} -> {run_dir}", flush=True)
            resume = ["--resume"] if run_dir.is_dir() else []
            rc = subprocess.call([sys.executable, "-m", "arm_ray.main", "--config", str(path), "--output",
                                  str(run_dir), *resume])
            if rc != 0:
                print(f"seed {seed}: the run failed (exit {rc}); see {run_dir}", file=sys.stderr)
                return rc
        builds[seed] = headline(json.loads((run_dir / "report.json").read_text()), one)
        write_text(where / "summary.json", json.dumps(builds, indent=2) + "\n")
        write_text(where / "summary.md", summary_md(cfg["name"], builds))
    print(summary_md(cfg["name"], builds))
    return 0


if __name__ == "__main__":
    sys.exit(main())
