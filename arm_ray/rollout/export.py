"""Gold trajectories of a suite as calibration data: OpenAI-messages JSONL the roles layer loads.

    python -m arm_ray.rollout.export tau2_retail --split train --out data/calibration/tau2_retail_train.jsonl
    python -m arm_ray.rollout.export officebench --split calibration --data-dir PATH/OfficeBench/tasks

Each task is played by the suite's oracle (for τ²: the task's gold actions,
then a reply holding its required outputs) through the same agent loop and
environment as a model's rollouts; only episodes that score 1 are written, each
as {"benchmark", "messages", "tools"}. The trajectories are rendered through
the traced model's own chat template when calibration is encoded, so one file
serves any model. Give the file as `calibration.files` with `benchmark:` the
config's benchmark (default: the suite's parser name, e.g. `tau_bench`).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from arm_ray.atomic import atomic_write_text
from arm_ray.errors import ArmError
from arm_ray.rollout.agent import run_episodes, training_record
from arm_ray.rollout.policies import OraclePolicy
from arm_ray.suites import SUITES, get_suite


def export(suite_name: str, split: str, out: Path, n: int | None = None, benchmark: str | None = None,
           options: dict | None = None) -> tuple[int, int]:
    """Write the gold episodes of `split` to `out` (atomically); (written, tasks)."""
    suite = get_suite(suite_name, "suite", options)
    tasks = suite.tasks(split, n)
    episodes = run_episodes(suite, tasks, OraclePolicy(suite), split)
    suite.close()
    records = [training_record(e, suite.parser) for e in episodes if e.success]
    if benchmark:
        records = [{**r, "benchmark": benchmark} for r in records]
    out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records))
    return len(records), len(tasks)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m arm_ray.rollout.export", description=__doc__.split("\n")[0])
    ap.add_argument("suite", help=f"a suite: {', '.join(SUITES)} (or package.module:Class)")
    ap.add_argument("--split", default="train", help="test, dev, calibration or train (default train)")
    ap.add_argument("--out", type=Path, default=None,
                    help="the JSONL file to write (default: data/calibration/<suite>_<split>.jsonl)")
    ap.add_argument("--data-dir", default=None, help="the benchmark's data folder (the suite's option data_dir)")
    ap.add_argument("-n", type=int, default=None, help="first N tasks of the split (default: all)")
    ap.add_argument("--benchmark", default=None, help="the `benchmark` field of each record")
    ap.add_argument("--options", default="{}", help="the suite's options as JSON, e.g. '{\"trials\": 1}'")
    a = ap.parse_args(argv)
    try:
        options = json.loads(a.options)
        if a.data_dir is not None:
            options["data_dir"] = str(Path(a.data_dir).resolve())
        a.out = a.out or Path("data/calibration") / f"{a.suite.replace(':', '_')}_{a.split}.jsonl"
        written, total = export(a.suite, a.split, a.out, a.n, a.benchmark, options)
    except json.JSONDecodeError as e:
        print(f"error: --options: not valid JSON ({e.msg})", file=sys.stderr)
        return 2
    except (ArmError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"{a.out}: {written} gold trajectories of {total} {a.suite} {a.split} tasks")
    return 0 if written else 1


if __name__ == "__main__":
    sys.exit(main())
