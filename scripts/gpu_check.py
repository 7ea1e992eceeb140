"""The GPU check, one command: tracer, candidate merge and transplant on CUDA, with the figures a run depends on.

    python scripts/gpu_check.py                    # Qwen3-8B shape (36 layers), base + 2 experts, bf16
    python scripts/gpu_check.py --layers 4         # the same code paths in a minute

Builds a random pool of the shape on local disk (the models differ by small noise, so merges do real work), then:
  1. an expert streamed onto the GPU (build_model), its size and the peak GPU memory;
  2. the tracer in bf16 with float32 sums: two traces give the same bits (and index_add_, the old way, is shown
     for comparison), tokens/s traced against a plain forward on the same packs (goal <= 1.05x);
  3. candidates built on the GPU tensor by tensor (seconds per candidate scaled to 8B parameters; goal <= 60 s),
     peak GPU memory against the model's size, and a DARE candidate built twice gives the same bits;
  4. a transplant (5 % of each layer's neurons from an expert into the base), checked row by row;
  5. a model split over the GPU and the CPU (trace.devices) gives the sums of the GPU alone, within float noise.
Prints one summary table; exits 1 when a check fails. vLLM is not exercised here (the rollout path needs it).
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from arm_ray import checkpoints, pool  # noqa: E402
from arm_ray.architectures import mlp_names  # noqa: E402
from arm_ray.arm_model import write_arm_model  # noqa: E402
from arm_ray.devices import DevicePlan, connect  # noqa: E402
from arm_ray.roles.spans import Encoded  # noqa: E402
from arm_ray.saliency import SaliencyTracer, pack_trajectories  # noqa: E402
from arm_ray.selection import topk_layer  # noqa: E402
from arm_ray.toy.random_pool import QWEN3_8B, write_random_pool  # noqa: E402
from arm_ray.tracing import Sources, TraceJob, build_model  # noqa: E402

PARAMS_8B = 8.19e9  # Qwen3-8B's parameter count, to scale a shallower model's merge time


def sync():
    torch.cuda.synchronize()


def gib(n: float) -> str:
    return f"{n / 2**30:.1f} GiB"


def packs_for(vocab: int, n: int, seq: int, pack: int, groups: int = 2):
    rng = np.random.default_rng(0)
    encoded = [Encoded(rng.integers(0, vocab, seq),
                       {f"r{g}": np.sort(rng.choice(seq, seq // 4, replace=False)) for g in range(groups)},
                       benchmark="b") for _ in range(n)]
    return pack_trajectories(encoded, [("b", f"r{g}") for g in range(groups)], pack)


def trace(model, packed, layers, d_ff) -> tuple[np.ndarray, float]:
    tracer = SaliencyTracer(model, mlp_names("qwen3"), layers, d_ff, len(packed.groups))
    sync()
    t0 = time.perf_counter()
    sums = tracer.run(packed.packs)
    sync()
    return sums, time.perf_counter() - t0


@torch.no_grad()
def plain(model, packed) -> float:
    sync()
    t0 = time.perf_counter()
    for p in packed.packs:
        model.model(input_ids=p.input_ids.cuda(), position_ids=p.position_ids.cuda(), use_cache=False)
    sync()
    return time.perf_counter() - t0


@torch.no_grad()
def index_add_sums(model, packed, layers, d_ff) -> np.ndarray:
    """The accumulation this project used before (index_add_, atomics on CUDA), for comparison only."""
    sums = torch.zeros(layers, len(packed.groups), d_ff, device="cuda")
    batch = {}

    def hook(layer):
        def h(_m, args):
            z = args[0]
            rows = z.reshape(-1, z.shape[-1]).index_select(0, batch["i"]).float().abs_().mul_(batch["w"][:, None])
            sums[layer].index_add_(0, batch["g"], rows)
        return h

    mods = [model.get_submodule(mlp_names("qwen3").down.format(l=i)) for i in range(layers)]
    handles = [m.register_forward_pre_hook(hook(i)) for i, m in enumerate(mods)]
    for p in packed.packs:
        batch.update(i=p.index.cuda(), g=p.group.cuda(), w=p.weight.cuda())
        model.model(input_ids=p.input_ids.cuda(), position_ids=p.position_ids.cuda(), use_cache=False)
    for h in handles:
        h.remove()
    return sums.cpu().numpy()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--layers", type=int, default=36)
    ap.add_argument("--experts", type=int, default=2)
    ap.add_argument("--dir", default=None, help="where the random pool is written (default: a temp dir)")
    ap.add_argument("--trajectories", type=int, default=16)
    ap.add_argument("--seq", type=int, default=2048)
    ap.add_argument("--pack", type=int, default=8192)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--json", default=None, help="also write the figures here")
    args = ap.parse_args()
    if not torch.cuda.is_available():
        print("gpu_check: no CUDA device visible", file=sys.stderr)
        return 2
    rows, ok = [], True

    def row(check, figure, goal="", passed=True):
        nonlocal ok
        ok &= bool(passed)
        rows.append((check, figure, goal, "yes" if passed else "NO"))
        print(f"{check}: {figure}", flush=True)

    root = Path(args.dir or tempfile.mkdtemp(prefix="gpu_check-"))
    root.mkdir(parents=True, exist_ok=True)
    params_per_layer = 4096 * (4096 + 2 * 1024 + 4096) + 3 * 4096 * 12288
    model_bytes = lambda layers: 2 * (layers * params_per_layer + 2 * 151936 * 4096)  # noqa: E731
    free = shutil.disk_usage(root).free
    while args.layers > 2 and model_bytes(args.layers) * (args.experts + 1) * 1.05 > free:
        args.layers -= 2  # the pool (and later the transplanted copy, once an expert is deleted) must fit
    if model_bytes(args.layers) * (args.experts + 1) * 1.05 > free:
        print(f"gpu_check: {root} has {gib(free)} free, too little for the pool; pass --dir", file=sys.stderr)
        return 2
    print(f"{gib(free)} free in {root}: {args.layers} layers", flush=True)
    model_bytes = model_bytes(args.layers)
    dev = torch.cuda.get_device_properties(0)
    print(f"device: {dev.name}, {gib(dev.total_memory)}; torch {torch.__version__}", flush=True)
    try:
        t0 = time.perf_counter()
        paths = write_random_pool(root, {**QWEN3_8B, "num_hidden_layers": args.layers}, args.experts,
                                  device="cuda", noise=0.1)
        row("random pool written (bf16)", f"{args.experts} experts + base, {gib(model_bytes)} each, "
            f"{time.perf_counter() - t0:.0f} s")
        experts = {f"expert_{i}": str(paths[f"expert_{i}"]) for i in range(args.experts)}
        sources = Sources(str(paths["base"]), experts, "bfloat16", "cuda")
        plan = sources.plan()
        n_params = sum(np.prod(t.shape) for t in sources.checkpoint(pool.BASE).tensors.values())

        # 1. an expert streamed to the GPU
        torch.cuda.reset_peak_memory_stats()
        t0 = time.perf_counter()
        model = build_model(sources.base, sources.tensors(TraceJob("e0", "expert", ("b",), expert="expert_0"), plan),
                            plan, "bfloat16")
        sync()
        load_s = time.perf_counter() - t0
        size = sum(p.numel() * p.element_size() for p in model.parameters())
        row("expert streamed to GPU", f"{load_s:.1f} s, {n_params / 1e9:.2f} B params, peak "
            f"{gib(torch.cuda.max_memory_allocated())} for a {gib(size)} model")

        # 2. tracer: determinism and overhead
        cfg = model.config
        packed = packs_for(cfg.vocab_size, args.trajectories, args.seq, args.pack)
        n_tokens = sum(p.n_tokens for p in packed.packs)
        trace(model, packed, cfg.num_hidden_layers, cfg.intermediate_size)  # warm-up
        a, _ = trace(model, packed, cfg.num_hidden_layers, cfg.intermediate_size)
        b, _ = trace(model, packed, cfg.num_hidden_layers, cfg.intermediate_size)
        row("trace twice, same bits (matmul sums)", str(np.array_equal(a, b)), "True", np.array_equal(a, b))
        old = [index_add_sums(model, packed, cfg.num_hidden_layers, cfg.intermediate_size) for _ in range(3)]
        same_old = all(np.array_equal(old[0], o) for o in old[1:])
        row("index_add_ (before), 3 runs same bits", f"{same_old}; max rel diff to matmul sums "
            f"{float(np.max(np.abs(old[0] - a) / np.maximum(np.abs(a), 1e-30))):.1e}")
        traced, plain_s = [], []
        for _ in range(args.repeats):  # interleaved, so drifts of clock or temperature hit both alike
            traced.append(trace(model, packed, cfg.num_hidden_layers, cfg.intermediate_size)[1])
            plain_s.append(plain(model, packed))
        ratio = statistics.median(traced) / statistics.median(plain_s)
        row("tracer tokens/s (bf16, float32 sums)", f"{n_tokens / statistics.median(traced):,.0f} traced vs "
            f"{n_tokens / statistics.median(plain_s):,.0f} plain: {ratio:.3f}x", "<= 1.05x", ratio <= 1.05)
        del model
        torch.cuda.empty_cache()

        # 3. candidates built on the GPU
        for method, params in [("ties", {"weight": 1.0, "density": 0.5}), ("task_arithmetic", {"weight": 0.5}),
                               ("dare_ties", {"weight": 1.0, "density": 0.5})]:
            recipe = pool.Recipe(method, method, params, seed=0)
            torch.cuda.reset_peak_memory_stats()
            sync()
            t0 = time.perf_counter()
            model = build_model(sources.base, sources.tensors(TraceJob(method, "candidate", ("b",), recipe=recipe),
                                                              plan), plan, "bfloat16")
            sync()
            secs = time.perf_counter() - t0
            per_8b = secs * PARAMS_8B / n_params
            peak = torch.cuda.max_memory_allocated()
            row(f"candidate {method} on GPU", f"{secs:.1f} s ({per_8b:.0f} s per 8B), peak {gib(peak)} = "
                f"{peak / size:.2f}x the model", "<= 60 s per 8B", per_8b <= 60)
            if method == "dare_ties":
                first = {n: p.detach().clone() for n, p in list(model.named_parameters())[:8]}
                del model
                model = build_model(sources.base, sources.tensors(TraceJob(method, "candidate", ("b",),
                                                                           recipe=recipe), plan), plan, "bfloat16")
                params2 = dict(model.named_parameters())
                same = all(torch.equal(first[n], params2[n]) for n in first)
                row("dare_ties built twice on GPU, same bits", str(same), "True", same)
            del model
            torch.cuda.empty_cache()

        # 4. transplant: 5 % of each layer's neurons of expert_0 into the base
        base_ck, donor = sources.checkpoint(pool.BASE), sources.checkpoint("expert_0")
        if args.experts > 1:  # room on disk for the transplanted copy
            shutil.rmtree(paths[f"expert_{args.experts - 1}"])
        rng = np.random.default_rng(0)
        d_ff = base_ck.config["intermediate_size"]
        mask = np.zeros((args.layers, d_ff), dtype=bool)
        for layer in range(args.layers):
            mask[layer, topk_layer(rng.random(d_ff), 0.05)] = True
        t0 = time.perf_counter()
        n = write_arm_model(base_ck, {"expert_0": donor}, {"expert_0": mask}, root / "transplanted")
        secs = time.perf_counter() - t0
        out = checkpoints.open_checkpoint(str(root / "transplanted"), "transplanted")
        name = mlp_names("qwen3").down.format(l=0) + ".weight"
        cols = np.flatnonzero(mask[0])
        moved = torch.equal(out.read_slice(name, 1, cols), donor.read_slice(name, 1, cols))
        kept = np.flatnonzero(~mask[0])[:64]
        untouched = torch.equal(out.read_slice(name, 1, kept), base_ck.read_slice(name, 1, kept))
        row("transplant (5 % per layer)", f"{n} tensor edits, {secs:.1f} s; moved columns equal the donor's: "
            f"{moved}, others the base's: {untouched}", "equal", moved and untouched)
        shutil.rmtree(root / "transplanted", ignore_errors=True)

        # 5. one model split over the GPU and the CPU: the first two layers of expert_0, in float32
        n_layers = min(args.layers, 2)
        sub = packs_for(cfg.vocab_size, 4, 512, 2048)
        names = [n for n in sorted(donor.tensors) if ".layers." not in n
                 or any(n.startswith(f"model.layers.{i}.") for i in range(n_layers))]
        results = {}
        for devices in [("cuda:0", "cuda:0"), ("cuda:0", "cpu")]:
            plan2 = DevicePlan(devices, n_layers)
            stream = ((n, donor.read_tensor(n, plan2.device_of(n))) for n in names)
            model = build_model_layers(sources.base, stream, plan2)
            handles = connect(model.model, plan2)
            results[devices[-1]] = trace(model, sub, n_layers, d_ff)[0]
            for h in handles:
                h.remove()
            del model
        ref = results["cuda:0"]
        rel = float(np.max(np.abs(results["cpu"] - ref)) / np.max(np.abs(ref)))
        row(f"split over cuda:0 + cpu ({n_layers} layers, fp32)", f"max diff to GPU alone {rel:.1e} of the largest "
            "sum", "< 1e-4", rel < 1e-4)
    finally:
        if not args.dir:
            shutil.rmtree(root, ignore_errors=True)
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    row("host peak RSS of this process", gib(rss))
    print("\n| check | figure | goal | met |\n| --- | --- | --- | --- |")
    for r in rows:
        print("| " + " | ".join(r) + " |")
    if args.json:
        Path(args.json).write_text(json.dumps([dict(zip(("check", "figure", "goal", "met"), r)) for r in rows],
                                              indent=1) + "\n")
    return 0 if ok else 1


def build_model_layers(config_dir, tensors, plan):
    """build_model with the config cut to the plan's layers (the split check needs no more)."""
    d = Path(tempfile.mkdtemp())
    cfg = json.loads((Path(config_dir) / "config.json").read_text())
    cfg["num_hidden_layers"] = plan.n_layers
    if "layer_types" in cfg:
        cfg["layer_types"] = cfg["layer_types"][:plan.n_layers]
    (d / "config.json").write_text(json.dumps(cfg))
    return build_model(str(d), tensors, plan, "float32")


if __name__ == "__main__":
    sys.exit(main())
