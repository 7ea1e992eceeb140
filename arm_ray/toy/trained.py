"""The demo pool (`configs/demo.yaml`): a tiny Qwen3 base and one SFT expert per in-domain suite of the world.

    build_trained_pool(out, preset="demo")   # or scripts/make_toy_pool.py --out DIR

Writes, deterministically from the seed and cached by its inputs (STAMP):
    tokenizer/                 byte-level BPE trained on the world's text, Qwen3-style chat template
    base/                      a generalist: copy drills, the world's generic text, then SFT on a share of
                               every suite's episodes (sql's too), so it scores on each
    expert_<suite>/            the base sharpened on its own suite (steps and learning rate per suite)
    data/<suite>/<split>.jsonl oracle episodes (calibration, dev, train) for the roles layer
    scores.json                {model: {suite: score}} on each suite's test split (base, experts)
    task_vectors.json          each expert's ||theta_expert - theta_base|| / ||theta_base||, overall and MLPs
    probe.json                 each expert's midpoint with the base, scored on the expert's suite
This is the paper's regime: experts that sharpen a capable generalist, so a
merge keeps part of each skill (`toy/gate.py` checks it on the demo run).
The copy-drill phase is cached beside the pool (`.toy_cache/` in the pool's
parent directory), keyed by its own inputs, so a recipe change in the later
phases does not redo it.
"""

from __future__ import annotations

import json
import logging
import shutil
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

from arm_ray import checkpoints
from arm_ray.atomic import atomic_dir
from arm_ray.devices import fast_dtype
from arm_ray.experts.cache import is_built, pool_stamp, write_jsonl
from arm_ray.experts.scoring import (
    evaluate,
    oracle_records,
    progress_bar,
    save_model,
    score_table,
    task_vector_size,
)
from arm_ray.toy.chat import (
    CHAT_TEMPLATE,
    TINY_SHAPE,
    TOY_SHAPE,
    qwen3_config,
    train_bpe_tokenizer,
)
from arm_ray.toy.drills import copy_accuracy, copy_drills, drill_examples
from arm_ray.world import IN_DOMAIN, OFFLINE_SUITES

log = logging.getLogger(__name__)

VERSION = 7
DRILLS_VERSION = 1


@dataclass
class ToyPoolSpec:
    seed: int = 0
    vocab_size: int = 2048
    # narrow and shallow, so copying emerges within the CPU budget (about 1,000 drill steps; see copy_drills)
    shape: dict = field(default_factory=lambda: dict(TOY_SHAPE))
    n_train: int = 1000  # oracle episodes per suite for training (more episodes: less memorising)
    n_calibration: int = 32
    n_dev: int = 24
    n_test: int = 40
    drill_steps: int = 1200  # base phase 1: copy drills only, until copying emerges (900-1200 steps here)
    base_steps: int = 200  # base phase 2: the world's text, drills mixed in
    generalist_steps: int = 500  # base phase 3: SFT on a share of every suite's episodes, drills mixed in
    # share of each suite's train episodes in phase 3: less of retail, which a small model learns fastest, so the
    # base scores on every suite but leaves each expert room; sql too, so the out-of-domain suite scores > 0
    generalist_share: dict = field(default_factory=lambda: {"retail": 0.3, "office": 1.0, "shell": 0.6,
                                                            "sql": 1.0})
    # experts sharpen the generalist: a few hundred steps at a lower learning rate, sized per suite so the task
    # vectors come out of similar size (a larger one drowns the others in a merge)
    expert_steps: dict = field(default_factory=lambda: {"retail": 250, "office": 250, "shell": 200})
    expert_lr: dict = field(default_factory=lambda: {"retail": 2e-3, "office": 1.5e-3, "shell": 1.5e-3})
    expert_drill_share: float = 0.2  # drills replayed during SFT so fine-tuning keeps the copy skill
    lr: float = 3e-3
    batch_tokens: int = 4096
    max_length: int = 1024
    threads: int = 2
    max_new_tokens: int = 160  # per assistant turn when scoring
    n_drills: int = 18000  # copy drills for the base (see copy_drills), packed drills_per_example at a time
    drills_per_example: int = 6
    # autocast matmuls (float32 master weights) where the CPU computes bf16 (AMX, AVX512-BF16); None picks. On an
    # AVX2 CPU, torch emulates bf16: a drill step took 6 s there against 0.4 s in float32 (arm_ray.devices)
    bf16: bool | None = None


PRESETS = {
    "demo": ToyPoolSpec(),
    # the tests' pool: same world, smaller model and budget (its gate is not checked)
    "tests": ToyPoolSpec(shape=dict(TINY_SHAPE), vocab_size=1024, n_train=48, n_calibration=8, n_dev=6, n_test=6,
                         drill_steps=4, base_steps=4, generalist_steps=4,
                         expert_steps={"retail": 8, "office": 8, "shell": 8}, max_new_tokens=24, n_drills=300),
}


def pool_table(out: Path) -> str:
    """A built pool's table (scores, task-vector sizes) and its midpoint probe, read from its files."""
    scores = json.loads((out / "scores.json").read_text())
    sizes = json.loads((out / "task_vectors.json").read_text())
    probe = json.loads((out / "probe.json").read_text())
    return score_table(scores, sizes) + "\n\nmidpoint(base, expert) on the expert's suite: " + ", ".join(
        f"{e} {v['midpoint']:.2f} (expert {scores[e][v['suite']]:.2f}, base {scores['base'][v['suite']]:.2f})"
        for e, v in probe.items())


def build_trained_pool(out: str | Path, preset: str = "demo", **overrides) -> Path:
    """Build (or reuse) the pool in `out`. Named from configs as `arm_ray.toy.trained:build_trained_pool`."""
    import torch
    from transformers import AutoTokenizer

    from arm_ray.experts.sft import make_examples, train

    spec = ToyPoolSpec(**{**asdict(PRESETS[preset]), **overrides})
    if spec.bf16 is None:  # made concrete before the cache key: a bf16 pool and a float32 one are two pools
        spec = replace(spec, bf16=fast_dtype("cpu") == "bfloat16")
    out = Path(out)
    stamp = pool_stamp({"version": VERSION, **asdict(spec)})
    if is_built(out, stamp):
        return out
    # said aloud: a relative `out` run from another directory builds a second pool there
    log.info(f"[toy pool] building the {preset} pool in {out.resolve()} (relative paths are relative to the "
             "working directory; about 17 minutes on 2 cores for `demo`, then cached); training in "
             f"{'bf16 autocast' if spec.bf16 else 'float32'}")
    t0 = time.perf_counter()
    torch.set_num_threads(spec.threads)
    with atomic_dir(out, overwrite=True) as tmp:
        data = {}
        for name in OFFLINE_SUITES:
            for split, n in (("train", spec.n_train), ("calibration", spec.n_calibration), ("dev", spec.n_dev)):
                data[name, split] = oracle_records(name, split, n)
                write_jsonl(tmp / "data" / name / f"{split}.jsonl", data[name, split])
        log.info(f"[toy pool] oracle episodes written ({time.perf_counter() - t0:.0f} s)")
        train_records = [r for name in OFFLINE_SUITES for r in data[name, "train"]]
        drills = copy_drills(spec.seed, spec.n_drills)
        cached = _drilled_base(spec, train_records, drills, out.parent / ".toy_cache")
        shutil.copytree(cached / "tokenizer", tmp / "tokenizer")
        tok = AutoTokenizer.from_pretrained(cached / "tokenizer")
        base = checkpoints.load_model(cached / "model")
        drill_ex = drill_examples(tok, drills, spec.drills_per_example)
        held_out = drill_examples(tok, copy_drills(spec.seed + 1, 120), spec.drills_per_example)
        copy_acc = {"after_drills": copy_accuracy(base, held_out)}

        bar, step = progress_bar(spec.base_steps, "base 2/3: world text")
        world = make_examples(tok, train_records, "world", spec.max_length) + drill_ex
        train(base, world, spec.base_steps, spec.lr, spec.batch_tokens, spec.seed + 100, step, bf16=spec.bf16)
        bar.close()
        # phase 3: a generalist: a share of every suite's episodes (sql's too), drills replayed
        generalist = [r for name in OFFLINE_SUITES
                      for r in data[name, "train"][: round(spec.generalist_share[name] * spec.n_train)]]
        sft = make_examples(tok, generalist, "assistant", spec.max_length)
        bar, step = progress_bar(spec.generalist_steps, "base 3/3: every suite")
        train(base, sft + _replay(drill_ex, len(sft), spec.expert_drill_share), spec.generalist_steps, spec.lr,
              spec.batch_tokens, spec.seed + 200, step, bf16=spec.bf16)
        bar.close()
        copy_acc["base"] = copy_accuracy(base, held_out)
        save_model(base, tok, tmp / "base")
        models = {"base": tmp / "base"}
        for i, name in enumerate(IN_DOMAIN):
            expert = checkpoints.load_model(tmp / "base")
            sft = make_examples(tok, data[name, "train"], "assistant", spec.max_length)
            bar, step = progress_bar(spec.expert_steps[name], f"expert_{name}")
            train(expert, sft + _replay(drill_ex, len(sft), spec.expert_drill_share), spec.expert_steps[name],
                  spec.expert_lr[name], spec.batch_tokens, spec.seed + 1 + i, step, bf16=spec.bf16)
            bar.close()
            copy_acc[f"expert_{name}"] = copy_accuracy(expert, held_out)
            save_model(expert, tok, tmp / f"expert_{name}")
            models[f"expert_{name}"] = tmp / f"expert_{name}"
        log.info(f"[toy pool] trained ({time.perf_counter() - t0:.0f} s); copy accuracy "
                 + ", ".join(f"{k} {v:.3f}" for k, v in copy_acc.items()))

        weights = {m: checkpoints.open_checkpoint(str(p), m).load_state_dict() for m, p in models.items()}
        sizes = {m: task_vector_size(weights["base"], weights[m]) for m in models if m != "base"}
        scores, probe = {}, {}
        for model_name, path in models.items():
            model = checkpoints.load_model(path)
            scores[model_name] = evaluate(model, tok, list(OFFLINE_SUITES), spec.n_test, spec.max_new_tokens,
                                          desc=f"score {model_name}")
        for name in IN_DOMAIN:  # the cheapest merge: halfway between the base and one expert
            e = f"expert_{name}"
            model = checkpoints.load_model(models["base"])
            model.load_state_dict({k: (weights["base"][k] + weights[e][k]) / 2 for k in weights["base"]},
                                  strict=False)
            probe[e] = {"suite": name, "midpoint": evaluate(model, tok, [name], spec.n_test, spec.max_new_tokens,
                                                            desc=f"score midpoint(base, {e})")[name]}
        (tmp / "scores.json").write_text(json.dumps(scores, indent=2) + "\n")
        (tmp / "task_vectors.json").write_text(json.dumps(sizes, indent=2) + "\n")
        (tmp / "probe.json").write_text(json.dumps(probe, indent=2) + "\n")
        (tmp / "spec.json").write_text(json.dumps(asdict(spec), indent=2) + "\n")
        (tmp / "copy_accuracy.json").write_text(json.dumps(copy_acc, indent=2) + "\n")
        (tmp / "STAMP").write_text(stamp + "\n")
    log.info(pool_table(out))
    log.info(f"[toy pool] built in {time.perf_counter() - t0:.0f} s")
    return out


def _replay(drills: list, n_examples: int, share: float) -> list:
    """Drills to mix into `n_examples` examples so they make `share` of the mix, spread over the drill set."""
    n_replay = share / (1 - share) * n_examples
    return drills[:: max(1, round(len(drills) / max(1.0, n_replay)))]


def _drilled_base(spec: ToyPoolSpec, train_records: list[dict], drills: list, cache: Path) -> Path:
    """Phase 1, cached by its own inputs: the tokenizer and the base trained on copy drills only (copying has
    to emerge before the world's text can use it), in `tokenizer/` and `model/` of the returned directory.
    The build always reads both back from there, so a build that found the cache and one that made it
    continue from the same bytes."""
    import torch
    import transformers
    from transformers import AutoModelForCausalLM

    from arm_ray.experts.sft import train

    keys = ("seed", "vocab_size", "shape", "n_train", "n_drills", "drills_per_example", "drill_steps", "lr",
            "batch_tokens", "threads", "bf16")
    key = pool_stamp({"version": DRILLS_VERSION, **{k: getattr(spec, k) for k in keys}})
    where = cache / f"drills-{key}"
    if not is_built(where, key):
        with atomic_dir(where, overwrite=True) as tmp:
            tok = train_bpe_tokenizer(tmp / "tokenizer", [_render(r) for r in train_records]
                                      + [f"{c}\n{r}" for c, r in drills], spec.vocab_size, split_digits=True,
                                      isolate_words=True)
            transformers.set_seed(spec.seed)
            stop = tok.convert_tokens_to_ids("<|im_end|>")
            base = AutoModelForCausalLM.from_config(qwen3_config(len(tok), spec.shape, stop, tok.pad_token_id),
                                                    dtype=torch.float32)
            bar, step = progress_bar(spec.drill_steps, "base 1/3: copy drills")
            train(base, drill_examples(tok, drills, spec.drills_per_example), spec.drill_steps, spec.lr,
                  spec.batch_tokens, spec.seed, step, bf16=spec.bf16)
            bar.close()
            save_model(base, tok, tmp / "model")
            (tmp / "STAMP").write_text(key + "\n")
    return where


def _render(record: dict) -> str:
    # the tokenizer is trained on the same text the chat template will produce
    from arm_ray.roles.template import compile_chat_template

    return compile_chat_template(CHAT_TEMPLATE).render(messages=record["messages"], tools=record.get("tools"),
                                                       add_generation_prompt=False)
