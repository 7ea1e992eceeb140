"""Rollout speed: the same episodes through vLLM rollout actors and through one-at-a-time transformers.

    python scripts/bench_rollout.py [--pool runs/_trained_pool] [--model expert_retail] [--tasks 40] [--actors 2]

Both sides run greedy decoding with the same limits on the same tasks of every
suite, on the same number of CPU threads; the vLLM side runs in Ray actors that
share those threads (engine start-up is timed apart and left out of its rate). Without --pool the
`tests` preset of the trained pool is built in a temp dir. Prints episodes/s of
both, how many episodes came out identical, and the ratio last.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--pool", default=None, help="a built trained pool (default: build the tests preset)")
    ap.add_argument("--model", default="expert_retail")
    ap.add_argument("--tasks", type=int, default=40, help="test tasks per suite (the toy config evaluates 40)")
    ap.add_argument("--max-new-tokens", type=int, default=160)
    ap.add_argument("--threads", type=int, default=2, help="CPU threads per side")
    ap.add_argument("--actors", type=int, default=2, help="rollout actors sharing the threads (one engine each)")
    args = ap.parse_args()

    import ray
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from actors.rollout import RayRollouts
    from arm_ray.config import Engine, Resources
    from arm_ray.rollout.policies import TransformersPolicy
    from arm_ray.rollout.run import SuiteRun, rollout
    from arm_ray.toy.trained import build_trained_pool
    from arm_ray.world import OFFLINE_SUITES

    tmp = tempfile.mkdtemp(prefix="bench_rollout_")
    pool = Path(args.pool) if args.pool else build_trained_pool(Path(tmp) / "pool", "tests")
    path = str(pool / args.model)
    runs = [SuiteRun(s, s, "test", args.tasks) for s in OFFLINE_SUITES]
    greedy = {"temperature": 0.0, "top_p": 1.0, "max_new_tokens": args.max_new_tokens}
    n = args.tasks * len(runs)
    print(f"{n} episodes ({args.tasks} per suite, {', '.join(OFFLINE_SUITES)}) of {path}, greedy, "
          f"<= {args.max_new_tokens} new tokens per turn, {args.threads} threads each side")

    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    ray.init(num_cpus=args.threads, include_dashboard=False, _temp_dir=str(Path(tmp) / "ray"), log_to_driver=False)
    engine = Engine(dtype="float32", max_model_len=4096, cpu_kv_cache_gb=1).model_dump()
    per_actor = args.threads / args.actors
    backend = RayRollouts(engine, Resources(rollout_actors=args.actors, rollout_num_cpus=per_actor), seed=0)
    t = time.perf_counter()
    # one dev task per actor, so every engine has started before the timed run
    backend.evaluate({"warm-up": path}, [SuiteRun("shell", "shell", "dev", args.actors)], {"shell": greedy})
    start_s = time.perf_counter() - t
    t = time.perf_counter()
    fast = backend.evaluate({args.model: path}, runs, {s: greedy for s in OFFLINE_SUITES})
    vllm_s = time.perf_counter() - t
    backend.shutdown()
    ray.shutdown()

    torch.set_num_threads(args.threads)
    tok = AutoTokenizer.from_pretrained(path)
    policy = TransformersPolicy(AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32), tok,
                                max_new_tokens=args.max_new_tokens, batch_size=1)
    t = time.perf_counter()
    slow = rollout(policy, args.model, runs)
    hf_s = time.perf_counter() - t

    same = sum(a["trajectory"] == b["trajectory"] for a, b in zip(sorted(fast, key=lambda r: r["task_id"]),
                                                                   sorted(slow, key=lambda r: r["task_id"])))
    steps = sum(r["steps"] for r in slow)
    print(f"vLLM, {args.actors} actor(s) (start-up {start_s:.1f} s, not counted): {vllm_s:7.1f} s  "
          f"{n / vllm_s:7.2f} episodes/s")
    print(f"transformers, one at a time:                  {hf_s:7.1f} s  {n / hf_s:7.2f} episodes/s")
    print(f"identical episodes: {same}/{n}; agent steps: {steps}; mean reward vLLM "
          f"{sum(r['reward'] for r in fast) / n:.2f}, transformers {sum(r['reward'] for r in slow) / n:.2f}")
    print(f"ratio (vLLM / transformers episodes/s): {hf_s / vllm_s:.1f}x")


if __name__ == "__main__":
    main()
