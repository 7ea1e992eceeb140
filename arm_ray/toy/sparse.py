"""An RL-trained-like pool: experts whose updates are sparse, where RAM and averaging part ways.

RL fine-tuning changes few of a model's entries (the RAM paper's premise); SFT changes nearly all, so on the trained
pool RAM reduces to averaging. Here each expert starts from the trained toy pool's base (`arm_ray.toy.trained`) and
is fine-tuned like that pool's experts (same episodes, steps, learning rates and replayed copy drills) with one
difference: only a random `density` share of the entries of each MLP matrix may change (a fixed mask per expert,
drawn independently, so two experts share about density^2 of the entries); everything else is frozen. AdamW with no
weight decay leaves a zero-gradient entry exactly where it was, so an expert's changed entries are its mask (minus
the few it moved by less than RAM's 1e-5 threshold).

The build writes the pool in the trained pool's layout (base, expert_<suite>, tokenizer, data) and:
  overlap.json     each expert's changed entries, the share another expert changed too (RAM+'s rho), pairwise Jaccard
  scores.json      greedy test scores of the base and the experts on every suite
  task_vectors.json
Cached by its inputs (STAMP), like the trained pool.
"""

from __future__ import annotations

import json
import logging
import shutil
import time
from pathlib import Path

from arm_ray import checkpoints
from arm_ray.atomic import atomic_dir
from arm_ray.experts.cache import is_built, pool_stamp
from arm_ray.experts.scoring import evaluate, progress_bar, save_model, score_table, task_vector_size
from arm_ray.world import IN_DOMAIN, OFFLINE_SUITES

log = logging.getLogger(__name__)

VERSION = 1
THRESHOLD = 1e-5  # what counts as a changed entry: RAM's threshold


def mlp_masks(model, density: float, seed: int) -> dict:
    """{parameter name: bool mask} over each MLP matrix: a random `density` share of its entries, exactly."""
    import torch

    g = torch.Generator().manual_seed(seed)
    masks = {}
    for name, p in model.named_parameters():
        if ".mlp." in name and p.dim() == 2:
            keep = torch.zeros(p.numel(), dtype=torch.bool)
            keep[torch.randperm(p.numel(), generator=g)[: round(density * p.numel())]] = True
            masks[name] = keep.view(p.shape)
    return masks


def restrict(model, masks: dict) -> list:
    """Freeze every parameter but the masked MLP entries; returns the gradient hooks (remove after training)."""
    hooks = []
    for name, p in model.named_parameters():
        if name in masks:
            m = masks[name].to(p.dtype)
            hooks.append(p.register_hook(lambda g, m=m: g * m))
        else:
            p.requires_grad_(False)
    return hooks


def changed_overlap(base: dict, experts: dict[str, dict], threshold: float = THRESHOLD) -> dict:
    """Per expert: entries changed (|delta| > threshold) and the share of them another expert changed too; the
    pairwise Jaccard of the changed sets. Counted over every tensor."""
    import torch

    names = sorted(base)
    changed = {e: {n: (sd[n].float() - base[n].float()).abs() > threshold for n in names} for e, sd in experts.items()}
    out: dict = {"threshold": threshold, "experts": {}, "jaccard": {}}
    for e in experts:
        mine = sum(int(changed[e][n].sum()) for n in names)
        shared = sum(int((changed[e][n] & torch.stack([changed[o][n] for o in experts if o != e]).any(0)).sum())
                     for n in names)
        total = sum(base[n].numel() for n in names)
        out["experts"][e] = {"changed": mine, "share_of_model": mine / total, "shared_share": shared / max(1, mine)}
    es = list(experts)
    for i, a in enumerate(es):
        for b in es[i + 1:]:
            inter = sum(int((changed[a][n] & changed[b][n]).sum()) for n in names)
            union = sum(int((changed[a][n] | changed[b][n]).sum()) for n in names)
            out["jaccard"][f"{a} / {b}"] = inter / max(1, union)
    return out


def build_sparse_pool(out: str | Path, source: str | Path = "runs/_trained_pool", density: float = 0.1,
                      seed: int = 0, preset: str = "demo") -> Path:
    """Build (or reuse) the sparse pool in `out` from the trained pool in `source` (built first if missing, with
    `preset` and `seed`). Named from configs as `arm_ray.toy.sparse:build_sparse_pool`."""
    import torch
    from transformers import AutoTokenizer

    from arm_ray.experts.sft import make_examples, train
    from arm_ray.toy.drills import copy_drills, drill_examples
    from arm_ray.toy.trained import ToyPoolSpec, _replay, build_trained_pool

    if not 0 < density < 1:
        raise ValueError(f"density: expected a share of entries in (0, 1), got {density}")
    source = build_trained_pool(source, preset=preset, seed=seed)
    spec = ToyPoolSpec(**json.loads((source / "spec.json").read_text()))
    out = Path(out)
    stamp = pool_stamp({"version": VERSION, "source": (source / "STAMP").read_text().strip(), "density": density,
                        "seed": seed})
    if is_built(out, stamp):
        return out
    log.info(f"[sparse pool] building in {out.resolve()} from {source}: {density:.0%} of each MLP matrix per expert")
    t0 = time.perf_counter()
    torch.set_num_threads(spec.threads)
    with atomic_dir(out, overwrite=True) as tmp:
        for part in ("tokenizer", "data", "base"):
            shutil.copytree(source / part, tmp / part)
        tok = AutoTokenizer.from_pretrained(tmp / "tokenizer")
        drill_ex = drill_examples(tok, copy_drills(spec.seed, spec.n_drills), spec.drills_per_example)
        models = {"base": tmp / "base"}
        for i, name in enumerate(IN_DOMAIN):
            expert = checkpoints.load_model(tmp / "base")
            hooks = restrict(expert, mlp_masks(expert, density, seed * 1000 + i))
            records = [json.loads(line) for line in (tmp / "data" / name / "train.jsonl").read_text().splitlines()]
            sft = make_examples(tok, records, "assistant", spec.max_length)
            bar, step = progress_bar(spec.expert_steps[name], f"sparse expert_{name}")
            train(expert, sft + _replay(drill_ex, len(sft), spec.expert_drill_share), spec.expert_steps[name],
                  spec.expert_lr[name], spec.batch_tokens, spec.seed + 1 + i, step, bf16=spec.bf16)
            bar.close()
            for h in hooks:
                h.remove()
            expert.requires_grad_(True)
            save_model(expert, tok, tmp / f"expert_{name}")
            models[f"expert_{name}"] = tmp / f"expert_{name}"
        weights = {m: checkpoints.open_checkpoint(str(p), m).load_state_dict() for m, p in models.items()}
        overlap = changed_overlap(weights["base"], {m: w for m, w in weights.items() if m != "base"})
        sizes = {m: task_vector_size(weights["base"], weights[m]) for m in models if m != "base"}
        scores = {m: evaluate(checkpoints.load_model(p), tok, list(OFFLINE_SUITES), spec.n_test, spec.max_new_tokens,
                              desc=f"score {m}") for m, p in models.items()}
        (tmp / "overlap.json").write_text(json.dumps(overlap, indent=2) + "\n")
        (tmp / "scores.json").write_text(json.dumps(scores, indent=2) + "\n")
        (tmp / "task_vectors.json").write_text(json.dumps(sizes, indent=2) + "\n")
        (tmp / "spec.json").write_text(json.dumps({"source": str(source), "density": density, "seed": seed,
                                                   "trained": json.loads((source / "spec.json").read_text())},
                                                  indent=2) + "\n")
        (tmp / "STAMP").write_text(stamp + "\n")
    log.info(score_table(scores, sizes))
    log.info("[sparse pool] changed entries: " + ", ".join(
        f"{e} {v['share_of_model']:.1%} of the model ({v['shared_share']:.1%} of them shared)"
        for e, v in overlap["experts"].items()))
    log.info(f"[sparse pool] built in {time.perf_counter() - t0:.0f} s")
    return out
