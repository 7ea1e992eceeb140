"""Tracer memory against the pool size: peak RSS of one tracer process for pools of 2, 4 and 8 experts.

    python scripts/bench_memory.py                      # ~300 M-parameter Qwen3 shape, bf16, CPU (~10 min)
    python scripts/bench_memory.py --experts 2 4 --layers 8
    python scripts/bench_memory.py --layers 8 --modes after --operators widen ties_aim

Each measurement runs in a fresh process: the `tracing.Worker` a tracer actor wraps, tracing an expert and then
each candidate of the demo's operator set (built from the checkpoints on disk) on a short calibration pack. The
peak is read per job from the kernel (VmHWM, reset between jobs) and reported as growth over the process's RSS
before its first job (imports of torch, transformers and mergekit), in units of one model's size.
"Before" is the code this replaced: every expert's and the base's state dict held in memory, the candidate merged
whole with mergekit, then copied into a model.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

OPERATORS = [("average", "linear", {"weight": 1.0}), ("task_arithmetic", "task_arithmetic", {"weight": 0.5}),
             ("ties", "ties", {"weight": 1.0, "density": 0.5}), ("dare_ties", "dare_ties", {"weight": 1.0,
                                                                                            "density": 0.5}),
             ("model_stock", "model_stock", {"filter_wise": False}), ("ram", "ram", {}),
             ("ram_official", "ram_official", {}), ("ramplus_official", "ramplus_official", {}), ("widen", "widen", {}),
             ("ties_aim", "ties", {"weight": 1.0, "density": 0.5}, 0.4)]  # AIM (omega 0.4) on TIES


def rss() -> tuple[int, int]:
    """(current RSS, peak RSS since the last reset) in bytes."""
    status = dict(line.split(":", 1) for line in Path("/proc/self/status").read_text().splitlines() if ":" in line)
    return int(status["VmRSS"].split()[0]) * 1024, int(status["VmHWM"].split()[0]) * 1024


def reset_peak() -> None:
    Path("/proc/self/clear_refs").write_text("5")  # resets VmHWM to the current RSS (Linux >= 4.0)


def child(root: Path, n_experts: int, mode: str, only: list[str] | None) -> dict:
    import numpy as np
    import torch
    import transformers  # noqa: F401  (imported before the baseline is read)
    from mergekit.merge_methods import merge_state_dicts

    from arm_ray import checkpoints, pool
    from arm_ray.roles.spans import Encoded
    from arm_ray.saliency import pack_trajectories
    from arm_ray.tracing import Sources, TraceJob, Worker, instantiate

    torch.set_num_threads(2)
    experts = {f"expert_{i}": str(root / f"expert_{i}") for i in range(n_experts)}
    base = checkpoints.open_checkpoint(str(root / "base"), "base")
    vocab = base.config["vocab_size"]
    rng = np.random.default_rng(0)
    packed = {"b": pack_trajectories([Encoded(rng.integers(0, vocab, 64), {"r": np.arange(8, 64)}, benchmark="b")],
                                     [("b", "r")], 256)}
    importance = root / "aim_importance.safetensors"
    ops = [(*op, None)[:4] for op in OPERATORS if only is None or op[0] in only]
    jobs = [TraceJob("expert_0", "expert", ("b",), expert="expert_0")] + [
        TraceJob(name, "candidate", ("b",), recipe=pool.Recipe(name, method, params, aim=aim,
                                                               importance=None if aim is None else str(importance)))
        for name, method, params, aim in ops]
    worker = Worker(Sources(str(base.path), experts, "bfloat16", "cpu"), torch_threads=2)
    held: dict = {}
    # an idle actor has imported its code: the model classes and mergekit's methods (a few hundred MiB)
    from transformers import AutoConfig, AutoModelForCausalLM

    with torch.device("meta"):
        AutoModelForCausalLM.from_config(AutoConfig.from_pretrained(base.path))
    pool.merge_tensor(pool.Recipe("warm", "ties", {"weight": 1.0, "density": 0.5}), "x",
                      {pool.BASE: torch.zeros(4, 4), "e": torch.ones(4, 4)})
    baseline = rss()[0]
    out = {"baseline": baseline, "jobs": {}}
    if any(op[3] is not None for op in ops):  # AIM's base importance: the base's forward on the calibration
        reset_peak()
        t0 = time.perf_counter()
        worker.importance(packed, str(importance))
        out["jobs"]["aim importance"] = {"peak": rss()[1], "seconds": time.perf_counter() - t0}
    for job in jobs:
        reset_peak()
        t0 = time.perf_counter()
        if mode == "after":
            worker.trace(job, packed)
        else:  # the code before streaming: every state dict cached, whole-dict merge, copy into a model
            for m, p in [(pool.BASE, str(base.path)), *experts.items()]:
                if m not in held:
                    held[m] = checkpoints.open_checkpoint(p, m).load_state_dict()
            if job.kind == "expert":
                sd = held[job.expert]
            else:
                inputs = {e: held[e] for e in experts}
                use_base = pool.uses_base(job.recipe.method)
                torch.manual_seed(0)
                own = job.recipe.method in pool.OWN or job.recipe.aim is not None
                sd = pool.build(job.recipe, inputs, held[pool.BASE]) if own else \
                    merge_state_dicts({pool.BASE: held[pool.BASE], **inputs} if use_base else inputs,
                                      job.recipe.method, base=pool.BASE if use_base else None,
                                      parameters=dict(job.recipe.parameters), out_dtype=torch.bfloat16)
            model = instantiate(str(base.path), sd, "cpu", "bfloat16")
            del model, sd
        out["jobs"][job.model] = {"peak": rss()[1], "seconds": time.perf_counter() - t0}
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--experts", type=int, nargs="+", default=[2, 4, 8])
    ap.add_argument("--layers", type=int, default=20)
    ap.add_argument("--dir", default=None, help="where to write the pool (kept); default a temporary directory, "
                    "removed at the end (about 5 GB at 8 experts)")
    ap.add_argument("--modes", nargs="+", default=["before", "after"], choices=["before", "after"])
    ap.add_argument("--operators", nargs="+", default=None, choices=[op[0] for op in OPERATORS],
                    help="only these candidates (default: all)")
    ap.add_argument("--child", nargs=3, metavar=("ROOT", "N", "MODE"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        print(json.dumps(child(Path(args.child[0]), int(args.child[1]), args.child[2], args.operators)))
        return 0
    root = Path(args.dir or tempfile.mkdtemp(prefix="bench_memory-"))
    try:
        return measure(args, root)
    finally:
        if not args.dir:
            shutil.rmtree(root, ignore_errors=True)


def measure(args: argparse.Namespace, root: Path) -> int:
    import torch

    from arm_ray.toy.random_pool import QWEN3_300M, write_random_pool

    shape = {**QWEN3_300M, "num_hidden_layers": args.layers}
    t0 = time.perf_counter()
    write_random_pool(root, shape, max(args.experts), dtype=torch.bfloat16)
    from arm_ray import checkpoints

    base = checkpoints.open_checkpoint(str(root / "base"))
    model_bytes = sum(base.tensor_bytes(n) for n in base.tensors)
    largest = max(base.tensor_bytes(n) for n in base.tensors)
    print(f"pool of {max(args.experts)} experts + base written in {time.perf_counter() - t0:.0f} s; one model: "
          f"{model_bytes / 2**20:.0f} MiB bf16 ({model_bytes / 2 / 1e6:.0f} M parameters), largest tensor "
          f"{largest / 2**20:.0f} MiB", flush=True)
    results = {}
    for n in args.experts:
        for mode in args.modes:
            t0 = time.perf_counter()
            only = ["--operators", *args.operators] if args.operators else []
            r = subprocess.run([sys.executable, __file__, "--child", str(root), str(n), mode, *only],
                               capture_output=True, text=True)
            if r.returncode:
                print(r.stderr[-3000:], file=sys.stderr)
                return 1
            results[n, mode] = json.loads(r.stdout.strip().splitlines()[-1])
            worst = max(j["peak"] for j in results[n, mode]["jobs"].values()) - results[n, mode]["baseline"]
            print(f"{n} experts, {mode}: peak growth {worst / model_bytes:.2f}x one model "
                  f"({time.perf_counter() - t0:.0f} s)", flush=True)
    names = list(results[args.experts[0], args.modes[-1]]["jobs"])
    print("\nPeak RSS growth of one tracer process over its idle RSS, in units of one model "
          f"({model_bytes / 2**20:.0f} MiB); goal <= 1.5x, flat in the number of experts")
    print("| experts | " + " | ".join(f"{m}: worst job" for m in args.modes) + " | "
          + " | ".join(f"{args.modes[-1]}: {n}" for n in names) + " |")
    print("| --- " * (1 + len(args.modes) + len(names)) + "|")
    for n in args.experts:
        worst = [max(j["peak"] for j in results[n, m]["jobs"].values()) - results[n, m]["baseline"]
                 for m in args.modes]
        r = results[n, args.modes[-1]]
        per = [(r["jobs"][j]["peak"] - r["baseline"]) / model_bytes for j in names]
        print(f"| {n} | " + " | ".join(f"{w / model_bytes:.2f}x" for w in worst) + " | "
              + " | ".join(f"{p:.2f}x" for p in per) + " |")
    idle = results[args.experts[0], args.modes[-1]]["baseline"]
    print(f"\n(idle RSS of the process, not counted above: {idle / 2**20:.0f} MiB: Python, torch, transformers, "
          "mergekit)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
