"""Transplant vs copying the checkpoint's files: time and peak RSS, side by side in one run.

    python scripts/bench_transplant.py [--layers 12 --hidden 1024 --d-ff 3072]   # ~380 MB bf16
Each operation runs in a fresh process so its peak RSS is its own; the output is fsynced
(the copy baseline is not). The ratio
(transplant time / copy time) is printed last; target <= 2.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import resource
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import torch


def make_checkpoint(path: Path, layers: int, hidden: int, d_ff: int, vocab: int, seed: int) -> None:
    from safetensors.torch import save_file

    g = torch.Generator().manual_seed(seed)
    path.mkdir(parents=True)
    sd = {"model.embed_tokens.weight": torch.randn(vocab, hidden, generator=g).bfloat16(),
          "model.norm.weight": torch.ones(hidden).bfloat16()}
    shards, shard = [], {}
    for layer in range(layers):
        p = f"model.layers.{layer}."
        for name, shape in (("self_attn.q_proj.weight", (hidden, hidden)), ("self_attn.k_proj.weight", (hidden // 4, hidden)),
                            ("self_attn.v_proj.weight", (hidden // 4, hidden)), ("self_attn.o_proj.weight", (hidden, hidden)),
                            ("mlp.gate_proj.weight", (d_ff, hidden)), ("mlp.up_proj.weight", (d_ff, hidden)),
                            ("mlp.down_proj.weight", (hidden, d_ff))):
            shard[p + name] = torch.randn(shape, generator=g).bfloat16()
        if layer % 4 == 3:
            shards.append(shard)
            shard = {}
    shards[0].update(sd)
    if shard:
        shards.append(shard)
    weight_map = {}
    for i, s in enumerate(shards):
        fname = f"model-{i + 1:05d}-of-{len(shards):05d}.safetensors"
        save_file(s, path / fname, metadata={"format": "pt"})
        weight_map.update({k: fname for k in s})
    (path / "model.safetensors.index.json").write_text(json.dumps({"metadata": {}, "weight_map": weight_map}))
    (path / "config.json").write_text(json.dumps({"model_type": "qwen3", "num_hidden_layers": layers,
                                                  "hidden_size": hidden, "intermediate_size": d_ff}))


def _copy(src, dst, q):
    t0 = time.perf_counter()
    shutil.copytree(src, dst)
    q.put((time.perf_counter() - t0, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024))


def _transplant(backbone, donor, dst, frac, q):
    from arm_ray import checkpoints
    from arm_ray.arm_model import write_arm_model

    t0 = time.perf_counter()
    b = checkpoints.open_checkpoint(backbone, "backbone")
    d = checkpoints.open_checkpoint(donor, "donor")
    layers, d_ff = b.config["num_hidden_layers"], b.config["intermediate_size"]
    rng = np.random.default_rng(0)
    mask = np.zeros((layers, d_ff), bool)
    for layer in range(layers):
        mask[layer, rng.choice(d_ff, int(frac * d_ff), replace=False)] = True
    write_arm_model(b, {"donor": d}, {"donor": mask}, Path(dst))
    q.put((time.perf_counter() - t0, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024))


def measure(target, *args):
    # Dirty pages left by the previous run would throttle this one's writes (kernel writeback):
    # start each measurement from a synced page cache, outside the timed region.
    os.sync()
    q = mp.get_context("spawn").Queue()
    p = mp.get_context("spawn").Process(target=target, args=(*args, q))
    p.start()
    out = q.get()
    p.join()
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--layers", type=int, default=12)
    ap.add_argument("--hidden", type=int, default=1024)
    ap.add_argument("--d-ff", type=int, default=3072)
    ap.add_argument("--vocab", type=int, default=16384)
    ap.add_argument("--fraction", type=float, default=0.1, help="neurons moved per layer")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--dir", default="/dev/shm" if Path("/dev/shm").is_dir() else ".",
                    help="where the checkpoints live (default: RAM-backed /dev/shm, so the ratio measures the "
                         "work, not the disk's write throttling, which on a cloud VM swings 10x between runs)")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(dir=args.dir) as d:
        d = Path(d)
        make_checkpoint(d / "backbone", args.layers, args.hidden, args.d_ff, args.vocab, 0)
        make_checkpoint(d / "donor", args.layers, args.hidden, args.d_ff, args.vocab, 1)
        size = sum(f.stat().st_size for f in (d / "backbone").iterdir()) / 2**20
        res = {"copy": [], "transplant": []}
        for i in range(args.repeats):  # interleaved, order alternating, so machine noise hits both alike
            runs = [("copy", _copy, (str(d / "backbone"), str(d / f"copy{i}"))),
                    ("transplant", _transplant, (str(d / "backbone"), str(d / "donor"), str(d / f"arm{i}"),
                                                 args.fraction))]
            for key, fn, fn_args in runs[:: 1 if i % 2 == 0 else -1]:
                res[key].append(measure(fn, *fn_args))
                shutil.rmtree(d / (f"copy{i}" if key == "copy" else f"arm{i}"))
                time.sleep(1.0)  # let the kernel settle the freed pages: the next run is not charged for them
    t = {k: float(np.median([x[0] for x in v])) for k, v in res.items()}
    for k, v in res.items():
        print(f"{k} runs (s): " + " ".join(f"{x[0]:.2f}" for x in v))
    rss = {k: max(x[1] for x in v) for k, v in res.items()}
    print(f"in {args.dir}; median of {args.repeats} runs each")
    print(f"checkpoint: {size:.0f} MB bf16, {args.layers} layers, d_ff={args.d_ff}; moving {args.fraction:.0%} "
          "of neurons per layer")
    print(f"copy files:  {t['copy']:.2f} s   peak RSS {rss['copy']:.0f} MB")
    print(f"transplant:  {t['transplant']:.2f} s   peak RSS {rss['transplant']:.0f} MB")
    print(f"peak RSS ratio transplant/copy: {rss['transplant'] / rss['copy']:.2f}")
    print(f"time ratio transplant/copy: {t['transplant'] / t['copy']:.2f}")


if __name__ == "__main__":
    main()
