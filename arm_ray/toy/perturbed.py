"""The quick pool (`configs/quick.yaml`): a random tiny Qwen3 base and experts that are perturbed copies of it.

The experts are not trained: each is the base plus small dense noise and a
stronger change on its own random subset of MLP neurons, so the experts'
salient neurons really differ and every step of ARM has something to find in
a minute. (`trained.py` builds the pool of `configs/demo.yaml`, whose experts
are fine-tuned on the offline world.) Deterministic for a seed and cached by
its inputs (a STAMP file), so a second run reuses the pool.

Named from a config by the dotted string `arm_ray.toy.perturbed:build_perturbed_pool`.
"""

from __future__ import annotations

import logging
from pathlib import Path

from arm_ray import checkpoints
from arm_ray.atomic import atomic_dir
from arm_ray.experts.cache import is_built, pool_stamp, write_jsonl
from arm_ray.toy.chat import TOY_SHAPE, qwen3_config, train_bpe_tokenizer
from arm_ray.toy.synthetic import GENERATORS, corpus_lines, make_trajectories

# the benchmarks the perturbed experts stand for: the parsers of the synthetic trajectories
BENCHMARKS = tuple(GENERATORS)


log = logging.getLogger(__name__)


def build_tokenizer(out: Path, seed: int = 0, vocab_size: int = 640):
    return train_bpe_tokenizer(out, corpus_lines(seed), vocab_size)


def build_models(out: Path, tokenizer_dir: Path, seed: int, shape: dict, benchmarks=BENCHMARKS,
                 neuron_fraction: float = 0.15, noise: float = 0.02, boost: float = 1.6) -> dict[str, Path]:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tokenizer_dir)
    cfg = qwen3_config(len(tok), shape)
    torch.manual_seed(seed)
    base = AutoModelForCausalLM.from_config(cfg, dtype=torch.float32)
    paths = {"base": out / "base"}
    checkpoints.save_model(base, paths["base"], tok)
    base_sd = {k: v.clone() for k, v in base.state_dict().items()}
    d_ff = cfg.intermediate_size
    for i, bench in enumerate(benchmarks):
        g = torch.Generator().manual_seed(seed * 1000 + i + 1)
        sd = {}
        for name, w in base_sd.items():
            sd[name] = w + noise * w.abs().mean() * torch.randn(w.shape, generator=g) if w.is_floating_point() else w
        n = max(1, int(neuron_fraction * d_ff))
        for layer in range(cfg.num_hidden_layers):
            idx = torch.randperm(d_ff, generator=g)[:n]
            pre = f"model.layers.{layer}.mlp."
            sd[pre + "gate_proj.weight"][idx] *= boost
            sd[pre + "up_proj.weight"][idx] *= boost
            sd[pre + "down_proj.weight"][:, idx] *= boost
        base.load_state_dict(sd)
        name = f"expert_{bench}"
        paths[name] = out / name
        checkpoints.save_model(base, paths[name], tok)
    return paths


def write_calibration(out: Path, n_per_benchmark: int, seed: int, benchmarks=BENCHMARKS) -> None:
    """tau_bench and agentbench_os as OpenAI JSONL, officebench as ShareGPT JSONL (as SIMIA ships it)."""
    out.mkdir(parents=True, exist_ok=True)
    for bench in benchmarks:
        write_jsonl(out / f"{bench}.jsonl", make_trajectories(bench, n_per_benchmark, seed))


def build_perturbed_pool(out: str, seed: int = 0, n_calibration: int = 16, shape: dict | None = None,
                         benchmarks: list[str] | tuple[str, ...] = BENCHMARKS) -> Path:
    """Build (or reuse) the pool in `out`: tokenizer/, base/, expert_<benchmark>/, calibration/."""
    shape = {**TOY_SHAPE, **(shape or {})}
    out_path = Path(out)
    stamp = pool_stamp({"v": 1, "seed": seed, "n": n_calibration, "shape": shape, "benchmarks": list(benchmarks)})
    if is_built(out_path, stamp):
        return out_path
    log.info(f"building the perturbed toy pool in {out_path.resolve()} (relative paths are relative to the "
             "working directory; seconds, then cached)")
    with atomic_dir(out_path, overwrite=True) as tmp:
        build_tokenizer(tmp / "tokenizer", seed)
        build_models(tmp, tmp / "tokenizer", seed, shape, tuple(benchmarks))
        write_calibration(tmp / "calibration", n_calibration, seed, tuple(benchmarks))
        (tmp / "STAMP").write_text(stamp + "\n")
    return out_path
