"""Span finding + tokenisation throughput: trajectories/s over N trajectories of ~2,000 tokens.

    python scripts/bench_roles.py [--n 10000] [--batch 256]
Target (issue 3): >= 500 trajectories/s on a 2-core machine.
"""

from __future__ import annotations

import argparse
import copy
import tempfile
import time
from pathlib import Path

from arm_ray.roles.formats import parse_record
from arm_ray.roles.spans import TrajectoryEncoder
from arm_ray.toy.perturbed import build_tokenizer
from arm_ray.toy.synthetic import make_trajectories


def long_records(n: int, target_tokens: int, tok) -> list:
    recs = []
    for i, r in enumerate(make_trajectories("tau_bench", n, seed=7)):
        r = copy.deepcopy(r)
        body = r["messages"][1:]
        r["messages"] = r["messages"][:1] + body * 5  # ~5x a 400-token episode: about 2,000 tokens
        recs.append(parse_record(r, f"gen:{i}"))
    return recs


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=10_000)
    ap.add_argument("--batch", type=int, default=1024, help="trajectories per encode call")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as d:
        tok = build_tokenizer(Path(d) / "tok")
    trajs = long_records(args.n, 2000, tok)
    enc = TrajectoryEncoder(tok)
    sample = enc.encode(trajs[:20], ["tool_call"])
    mean_tokens = sum(len(e.input_ids) for e in sample) / len(sample)
    t0 = time.perf_counter()
    n_tok = 0
    for i in range(0, len(trajs), args.batch):
        for e in enc.encode(trajs[i: i + args.batch], ["tool_call"]):
            n_tok += len(e.input_ids)
    dt = time.perf_counter() - t0
    print(f"trajectories: {len(trajs)}  mean tokens: {mean_tokens:.0f}  total tokens: {n_tok}")
    print(f"time: {dt:.1f} s  tokens/s: {n_tok / dt:,.0f}")
    print(f"trajectories/s: {len(trajs) / dt:.0f}")


if __name__ == "__main__":
    main()
