"""τ²-bench suites: gold-replay counts on every task, and episodes per second of the glue.

    python scripts/bench_tau2.py [--trials 5] [--procs 2]

1. Plumbing: every retail (114) and airline (50) task replayed with its gold
   actions through our agent loop, parser path and τ²'s evaluator must score 1;
   the same replay without its first writing action must score 0.
2. Speed: the gold policy on the retail test split (40 tasks x `--trials`), in
   one process and in `--procs` processes side by side, and how much of an
   episode is τ²'s own evaluator (re-run alone on the same episodes).
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from arm_ray.benchmarks.tau2_gold import GoldWithoutWrite  # noqa: E402
from arm_ray.rollout.agent import run_episodes, run_mixed  # noqa: E402
from arm_ray.rollout.policies import OraclePolicy  # noqa: E402
from arm_ray.suites import get_suite  # noqa: E402

ALL = {"splits": {"test": "base"}}  # τ²'s split of every task


def plumbing() -> None:
    for name in ("tau2_retail", "tau2_airline"):
        s = get_suite(name, options=ALL)
        tasks = s.tasks("test")
        gold = run_episodes(s, tasks, OraclePolicy(s), "test")
        ones = [e for e in gold if e.reward == 1.0]
        writing = [t for t in tasks if s.last_effective_write(t) is not None]
        dropped = run_episodes(s, writing, GoldWithoutWrite(s), "test")
        zeros = [e for e in dropped if e.reward == 0.0]
        idle = run_episodes(s, tasks, lambda turns: ["I am sorry, I cannot help with that."] * len(turns), "test")
        print(f"{name}: gold replay scores 1 on {len(ones)}/{len(tasks)} tasks; without its last effective write "
              f"0 on {len(zeros)}/{len(writing)} ({len(tasks) - len(writing)} tasks change nothing in the database); "
              f"an agent that only apologises scores {sum(e.reward for e in idle):.0f}/{len(tasks)}")
        for e in gold:
            if e.reward != 1.0:
                print(f"  gold {e.task_id}: reward {e.reward} ({e.finish_reason}, {e.error})")
        for e in dropped:
            if e.reward != 0.0:
                print(f"  dropped {e.task_id}: reward {e.reward}")


def _shard(args) -> tuple[int, float, float]:
    """(episodes, seconds of the loop, share of a one-thread loop's time spent in τ²'s evaluator), after a warm-up."""
    shard, shards, trials = args
    s = get_suite("tau2_retail", options={"trials": trials})
    tasks = s.tasks("test")[shard::shards]
    run_episodes(s, tasks[:2], OraclePolicy(s), "test")  # loads τ² and the database
    t0 = time.perf_counter()
    eps = run_episodes(s, tasks, OraclePolicy(s), "test")
    loop = time.perf_counter() - t0
    assert all(e.reward == 1.0 for e in eps)
    # the same episodes on one thread, timing Tau2Env.reward (τ²'s evaluate_simulation and little else)
    spent = [0.0]
    make = s.make_env

    def timed(task):
        env = make(task)
        reward = env.reward

        def measured():
            t = time.perf_counter()
            try:
                return reward()
            finally:
                spent[0] += time.perf_counter() - t
        env.reward = measured
        return env

    s.make_env = timed
    t0 = time.perf_counter()
    run_mixed([(s, t, "test") for t in tasks], OraclePolicy(s), env_workers=1)
    return len(eps), loop, spent[0] / (time.perf_counter() - t0)


def speed(trials: int, procs: int) -> None:
    print(f"\ngold policy on the retail test split, {trials} trials per task:")
    ctx = mp.get_context("spawn")
    results = {}
    for n in (1, procs):
        with ctx.Pool(n) as pool:
            parts = pool.map(_shard, [(i, n, trials) for i in range(n)])
        eps = sum(p[0] for p in parts)
        wall = max(p[1] for p in parts)
        results[n] = eps / wall
        evaluator = sum(p[2] for p in parts) / len(parts)
        print(f"  {n} process{'es' if n > 1 else ''}: {eps} episodes, {eps / wall:.1f} episodes/s "
              f"(on one thread, τ²'s evaluator takes {100 * evaluator:.0f} % of an episode; the glue, τ²'s "
              f"orchestrator and tools the rest)")
    print(f"  ratio {procs} processes / 1: {results[procs] / results[1]:.2f}x")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--trials", type=int, default=5)
    ap.add_argument("--procs", type=int, default=2)
    ap.add_argument("--skip-plumbing", action="store_true")
    a = ap.parse_args()
    if not a.skip_plumbing:
        plumbing()
    speed(a.trials, a.procs)


if __name__ == "__main__":
    main()
