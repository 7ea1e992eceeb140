"""Plumbing check of the OfficeBench suites without a capable model: the gold policy scores 1, a do-nothing agent 0.

    python scripts/officebench_gold.py --data-dir ../shared/benchmarks/officebench/tasks
    python scripts/officebench_gold.py --data-dir ../shared/benchmarks/officebench-simia/OfficeBench/tasks \\
        --suite officebench_simia

The gold policy (arm_ray/benchmarks/officebench_gold.py) plays the actions each subtask's evaluation checks for;
the do-nothing agent sends `finish_task` at once. Both go through the suite's own harness (prompts, parsing, apps
on real files, the shell in its sandbox) and evaluators, on every subtask of every set (1/2/3-app). Prints counts
per set, the gold policy's speed, every subtask the gold policy misses with the checks that failed, and every
subtask the do-nothing agent passes.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data-dir", required=True, help="an OfficeBench `tasks/` folder")
    ap.add_argument("--suite", choices=["officebench", "officebench_simia"], default="officebench")
    ap.add_argument("-n", type=int, default=None, help="first N subtasks (default: all)")
    a = ap.parse_args(argv)

    from arm_ray.benchmarks.officebench_gold import nothing_reply
    from arm_ray.errors import ArmError
    from arm_ray.rollout.agent import run_episodes
    from arm_ray.rollout.policies import OraclePolicy
    from arm_ray.suites import get_suite

    sets = "1-app+2-app+3-app"
    try:
        suite = get_suite(a.suite, "suite", {"data_dir": str(Path(a.data_dir).resolve()),
                                            "splits": {"test": sets, "dev": sets, "calibration": sets}})
        suite.check()
    except ArmError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    tasks = sorted(suite.tasks("test", a.n), key=lambda t: tuple(int(x) for x in t.data["id"].split("-")))
    nothing_text = nothing_reply(suite.variant)
    t0 = time.perf_counter()
    gold = run_episodes(suite, tasks, OraclePolicy(suite), "test", progress=_bar(len(tasks), "gold"))
    t_gold = time.perf_counter() - t0
    nothing = run_episodes(suite, tasks, lambda turns: [nothing_text] * len(turns), "test",
                           progress=_bar(len(tasks), "do-nothing"))
    print(file=sys.stderr)

    rows, misses, floor = Counter(), [], []
    for task, g, n in zip(tasks, gold, nothing):
        rows[task.kind, "subtasks"] += 1
        rows[task.kind, "gold"] += g.success
        rows[task.kind, "nothing"] += n.reward == 0
        rows[task.kind, "both"] += g.success and n.reward == 0
        if not g.success:
            checks = [c for c in (g.details or {}).get("checks", []) if not c.startswith("ok")]
            why = g.error or "; ".join(checks) or g.finish_reason
            misses.append(f"{task.data['id']} ({g.steps} steps, {g.finish_reason}): {why}")
        if n.reward:
            kinds = sorted({e["function"].removeprefix("evaluate_") for e in task.data["spec"]["evaluation"]})
            floor.append(f"{task.data['id']}: {', '.join(kinds)}: “{task.data['spec']['task'][:90]}”")
    print(f"{a.suite} on {a.data_dir}: {len(tasks)} subtasks; gold policy {t_gold:.1f} s, "
          f"{len(tasks) / t_gold:.2f} episodes/s ({sum(g.steps for g in gold)} steps)")
    print("| set | subtasks | gold scores 1 | do-nothing scores 0 | both |")
    print("|---|---:|---:|---:|---:|")
    kinds = sorted({k for k, _ in rows})
    for k in kinds:
        print(f"| {k} | {rows[k, 'subtasks']} | {rows[k, 'gold']} | {rows[k, 'nothing']} | {rows[k, 'both']} |")
    total = [sum(rows[k, c] for k in kinds) for c in ("subtasks", "gold", "nothing", "both")]
    print(f"| **all** | {total[0]} | {total[1]} | {total[2]} | {total[3]} |")
    print(f"\nGold misses ({len(misses)}):")
    for m in misses:
        print(f"- {m}")
    print(f"\nDo-nothing passes ({len(floor)}):")
    for f in floor:
        print(f"- {f}")
    return 0


def _bar(total: int, what: str):
    done = [0]

    def tick(k: int) -> None:
        done[0] += k
        print(f"\r{what}: {done[0]}/{total} episodes", end="", file=sys.stderr, flush=True)
    return tick


if __name__ == "__main__":
    sys.exit(main())
