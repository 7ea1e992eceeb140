"""Tracing overhead: tokens/s of the saliency tracer vs a plain decoder forward, same packs, one run.

    python scripts/bench_trace.py                       # 8 layers, d=512, CPU, float32
    python scripts/bench_trace.py --preset qwen3-8b --device cuda --dtype bfloat16   # on a GPU
The ratio (plain tokens/s / traced tokens/s) is printed last; target <= 1.05.
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import torch

from arm_ray.architectures import mlp_names
from arm_ray.roles.spans import Encoded
from arm_ray.saliency import SaliencyTracer, pack_trajectories

PRESETS = {
    "small": dict(hidden_size=512, intermediate_size=1536, num_hidden_layers=8, num_attention_heads=8,
                  num_key_value_heads=4, head_dim=64, vocab_size=4096),
    "qwen3-8b": dict(hidden_size=4096, intermediate_size=12288, num_hidden_layers=36, num_attention_heads=32,
                     num_key_value_heads=8, head_dim=128, vocab_size=151936),
}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--preset", choices=list(PRESETS), default="small")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--dtype", choices=["float32", "bfloat16"], default="float32")
    ap.add_argument("--seq", type=int, default=512, help="tokens per trajectory")
    ap.add_argument("--pack", type=int, default=2048, help="tokens per packed batch")
    ap.add_argument("--trajectories", type=int, default=16)
    ap.add_argument("--role-fraction", type=float, default=0.3)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    from transformers import AutoModelForCausalLM, Qwen3Config

    torch.manual_seed(0)
    cfg = Qwen3Config(**PRESETS[args.preset], max_position_embeddings=max(4096, args.seq))
    with torch.device(args.device):
        model = AutoModelForCausalLM.from_config(cfg, dtype=getattr(torch, args.dtype)).eval()
    rng = np.random.default_rng(0)
    encoded = [Encoded(rng.integers(0, cfg.vocab_size, args.seq),
                       {"r": np.sort(rng.choice(args.seq, int(args.seq * args.role_fraction), replace=False))},
                       benchmark="b") for _ in range(args.trajectories)]
    packed = pack_trajectories(encoded, [("b", "r")], args.pack)
    packs = [p.to(args.device) for p in packed.packs]
    n_tokens = sum(p.n_tokens for p in packs)
    decoder = model.model
    tracer = SaliencyTracer(model, mlp_names("qwen3"), cfg.num_hidden_layers, cfg.intermediate_size, 1)

    def sync():
        if args.device.startswith("cuda"):
            torch.cuda.synchronize()

    @torch.no_grad()
    def plain():
        for p in packs:
            decoder(input_ids=p.input_ids, position_ids=p.position_ids, use_cache=False)
        sync()

    def traced():
        tracer.run(packs)
        sync()

    plain()
    traced()  # warm-up
    times = {"plain": [], "traced": []}
    for _ in range(args.repeats):  # interleaved, so drift hits both alike
        for name, fn in (("plain", plain), ("traced", traced)):
            t0 = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t0)
    tps = {k: n_tokens / statistics.median(v) for k, v in times.items()}
    print(f"model: {args.preset} ({cfg.num_hidden_layers} layers, d={cfg.hidden_size}, d_ff={cfg.intermediate_size}) "
          f"{args.dtype} on {args.device}; {n_tokens} tokens in {len(packs)} packs, "
          f"{args.role_fraction:.0%} role tokens")
    print(f"plain decoder forward: {tps['plain']:,.0f} tokens/s")
    print(f"traced forward:        {tps['traced']:,.0f} tokens/s")
    print(f"ratio plain/traced: {tps['plain'] / tps['traced']:.3f}")


if __name__ == "__main__":
    main()
