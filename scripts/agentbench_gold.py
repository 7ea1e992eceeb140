"""Plumbing check of the AgentBench suites without a capable model: gold replay scores 1, a do-nothing agent 0.

    python scripts/agentbench_gold.py --data-dir ../shared/benchmarks/agentbench            # DB-bench, 300 tasks
    python scripts/agentbench_gold.py --data-dir PATH --split dev

DB-bench: the gold agent runs each write task's `label` statement and answers, and answers each read task's
`label`; the do-nothing agent answers `[]` at once. Both run through the suite's own environment and checker on a
real MariaDB server. Prints counts per task type, then every task that does not pass the first and fail the
second, with why.
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
    ap.add_argument("--data-dir", required=True, help="root of an AgentBench v0.2 clone")
    ap.add_argument("--split", default="test", help="test (standard.jsonl, default) or dev")
    a = ap.parse_args(argv)

    from arm_ray.benchmarks import get_suite
    from arm_ray.benchmarks.agentbench_db import WRITES
    from arm_ray.errors import ArmError
    from arm_ray.rollout.agent import run_episodes
    from arm_ray.rollout.policies import OraclePolicy

    try:
        suite = get_suite("agentbench_db", "suite", {"data_dir": str(Path(a.data_dir).resolve())})
        suite.check()
    except ArmError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    try:
        tasks = suite.tasks(a.split)
        t0 = time.perf_counter()
        gold = run_episodes(suite, tasks, OraclePolicy(suite), a.split)
        t_gold = time.perf_counter() - t0
        nothing = run_episodes(suite, tasks, lambda turns: ["Action: Answer\nFinal Answer: []"] * len(turns), a.split)
    finally:
        suite.close()

    rows, problems = Counter(), []
    for task, g, n in zip(tasks, gold, nothing):
        kind = "write" if task.kind in WRITES else "read"
        rows[kind, task.kind, "tasks"] += 1
        rows[kind, task.kind, "gold"] += g.success
        rows[kind, task.kind, "nothing"] += n.reward == 0
        rows[kind, task.kind, "both"] += g.success and n.reward == 0
        init = (g.details or {}).get("init_error")
        if init:  # the official set-up fails the same way on MySQL: the episode runs without that table or rows
            problems.append(f"{task.task_id} ({task.kind}): the table's set-up fails ({init}); gold "
                            f"{'1' if g.success else '0'} (answers the label), as in the official harness")
        if not (g.success and n.reward == 0):
            why = g.error or ("the table's md5 after the gold statement is not the task's answer_md5"
                              if task.kind in WRITES and not g.success else
                              "the do-nothing agent scores 1" if n.reward else "the gold answer does not match")
            problems.append(f"{task.task_id} ({task.kind}): gold {g.reward:.0f}, do-nothing {n.reward:.0f}: {why}")

    print(f"AgentBench DB-bench, split {a.split} ({len(tasks)} tasks, gold replay {t_gold:.1f} s, "
          f"{len(tasks) / t_gold:.0f} episodes/s)")
    print("| kind | type | tasks | gold scores 1 | do-nothing scores 0 | both |")
    print("|---|---|---:|---:|---:|---:|")
    for kind in ("write", "read"):
        types = sorted({t for k, t, _ in rows if k == kind})
        for t in types:
            print(f"| {kind} | {t} | {rows[kind, t, 'tasks']} | {rows[kind, t, 'gold']} | {rows[kind, t, 'nothing']} "
                  f"| {rows[kind, t, 'both']} |")
        total = [sum(rows[kind, t, c] for t in types) for c in ("tasks", "gold", "nothing", "both")]
        print(f"| **{kind}** | all | {total[0]} | {total[1]} | {total[2]} | {total[3]} |")
    for p in problems:
        print(f"- {p}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
