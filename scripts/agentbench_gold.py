"""Plumbing check of the AgentBench suites without a capable model: gold replay scores 1, a do-nothing agent 0.

    python scripts/agentbench_gold.py --data-dir ../shared/benchmarks/agentbench            # both, standard sets
    python scripts/agentbench_gold.py --data-dir PATH --suite os --split dev

DB-bench (300 tasks): the gold agent runs each write task's `label` statement and answers, and answers each read
task's `label`; the do-nothing agent answers `[]` at once. Both run on a real MariaDB server.
OS interaction (144 tasks): the gold agent answers a `match` task's string, and otherwise runs the task's `example`
in the episode's shell and answers its output; the do-nothing agent says `Act: finish` at once. Both run in the
sandboxed machine (build its tree first: python -m arm_ray.benchmarks.rootfs build).
Everything goes through the suites' own environments and checkers. Prints counts per task type, then every task
that does not pass the first and fail the second, with why.
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
    ap.add_argument("--split", default="test", help="test (the standard sets, default) or dev")
    ap.add_argument("--suite", choices=["db", "os", "both"], default="both")
    a = ap.parse_args(argv)
    status = 0
    if a.suite in ("db", "both"):
        status |= db_counts(a.data_dir, a.split)
    if a.suite in ("os", "both"):
        status |= os_counts(a.data_dir, a.split)
    return status


def replay(name: str, data_dir: str, split: str, nothing_text: str):
    """(tasks, gold episodes, do-nothing episodes, gold seconds), or None after printing why the suite cannot run."""
    from arm_ray.errors import ArmError
    from arm_ray.rollout.agent import run_episodes
    from arm_ray.rollout.policies import OraclePolicy
    from arm_ray.suites import get_suite

    try:
        suite = get_suite(name, "suite", {"data_dir": str(Path(data_dir).resolve()), "order": "file"})
        suite.check()
    except ArmError as e:
        print(f"error: {e}", file=sys.stderr)
        return None
    try:
        tasks = suite.tasks(split)
        t0 = time.perf_counter()
        gold = run_episodes(suite, tasks, OraclePolicy(suite), split)
        t_gold = time.perf_counter() - t0
        nothing = run_episodes(suite, tasks, lambda turns: [nothing_text] * len(turns), split)
    finally:
        suite.close()
    return tasks, gold, nothing, t_gold


def os_counts(data_dir: str, split: str) -> int:
    import json

    done = replay("agentbench_os", data_dir, split, "Think: Nothing to do.\n\nAct: finish")
    if done is None:
        return 2
    tasks, gold, nothing, t_gold = done
    rows, problems = Counter(), []
    for task, g, n in zip(tasks, gold, nothing):
        group = task.data["group"]
        rows[group, "tasks"] += 1
        rows[group, "gold"] += g.success
        rows[group, "nothing"] += n.reward == 0
        rows[group, "both"] += g.success and n.reward == 0
        if g.success and n.reward == 0:
            continue
        if g.error:
            why = " ".join(g.error.split())
            why = why[:140] + " … " + why[-80:] if len(why) > 240 else why
        elif n.reward:
            why = "the do-nothing agent scores 1"
        elif g.finish_reason == "invalid":
            shown = g.messages[-2]["content"] if len(g.messages) > 1 else ""
            why = (f"the example's output spans several lines and an answer is one line: "
                   f"{json.dumps(shown.removeprefix('The output of the OS:').strip()[:160])}")
        else:
            checks = (g.details or {}).get("checks") or []
            answer = (g.details or {}).get("answer") or ""
            again = checks[0][1].strip() if checks and task.data["task"]["check"][0] is None else None
            if again is not None and again != answer.strip():
                why = (f"answered {json.dumps(answer)[:80]}; the check's own run of the example printed "
                       f"{json.dumps(again)[:80]}: what it measures changed in between")
            elif checks:
                last = checks[-1][1].strip().splitlines()
                why = (f"check step {len(checks)} exits {checks[-1][0]} on the example's own output "
                       f"({json.dumps(answer)[:60]}): {last[-1][:120] if last else 'no output'}")
            else:
                why = f"answered {json.dumps(answer)[:80]}, which is not the match string"
        problems.append(f"{task.task_id} ({task.kind}): gold {g.reward:.0f}, do-nothing {n.reward:.0f}: {why}")
    groups = sorted({grp for grp, _ in rows}, key=lambda x: (not x.isdigit(), x))
    print(f"AgentBench OS interaction, split {split} ({len(tasks)} tasks, gold replay {t_gold:.1f} s)")
    print("| group | tasks | gold scores 1 | do-nothing scores 0 | both |")
    print("|---|---:|---:|---:|---:|")
    for grp in groups:
        print(f"| {grp} | {rows[grp, 'tasks']} | {rows[grp, 'gold']} | {rows[grp, 'nothing']} | {rows[grp, 'both']} |")
    total = [sum(rows[grp, c] for grp in groups) for c in ("tasks", "gold", "nothing", "both")]
    print(f"| **all** | {total[0]} | {total[1]} | {total[2]} | {total[3]} |")
    for p in problems:
        print(f"- {p}")
    return 0


def db_counts(data_dir: str, split: str) -> int:
    from arm_ray.benchmarks.agentbench_db import WRITES

    done = replay("agentbench_db", data_dir, split, "Action: Answer\nFinal Answer: []")
    if done is None:
        return 2
    tasks, gold, nothing, t_gold = done

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

    print(f"AgentBench DB-bench, split {split} ({len(tasks)} tasks, gold replay {t_gold:.1f} s, "
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
