"""The demo pool (`configs/demo.yaml`): a tiny Qwen3 base and one SFT expert per in-domain suite of the world.

    build_trained_pool(out, preset="demo")   # or scripts/make_toy_pool.py --out DIR

Writes, deterministically from the seed and cached by its inputs (STAMP):
    tokenizer/                 byte-level BPE trained on the world's text, Qwen3-style chat template
    base/                      trained on copy drills, then the world's generic text (everything but assistant turns)
    expert_<suite>/            base fine-tuned on the oracle's episodes of its suite's train split
    data/<suite>/<split>.jsonl oracle episodes (calibration, dev, train) for the roles layer
    scores.json                {model: {suite: score}} on each suite's test split
The gate (issue 4): each in-domain expert scores >= 0.5 on its suite and beats
the base and every other expert there by >= 0.25; `check_gate` says where not.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from arm_ray.benchmarks import get_suite
from arm_ray.checkpoints import atomic_dir
from arm_ray.rollout.agent import run_episodes, training_record
from arm_ray.rollout.policies import OraclePolicy
from arm_ray.toy.cache import is_built, pool_stamp, write_jsonl
from arm_ray.toy.chat import CHAT_TEMPLATE, TINY_SHAPE, TOY_SHAPE, qwen3_config, train_bpe_tokenizer
from arm_ray.toy.drills import copy_accuracy, copy_drills, drill_examples
from arm_ray.world import IN_DOMAIN, OFFLINE_SUITES

log = logging.getLogger(__name__)

VERSION = 6


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
    expert_steps: int = 350
    expert_drill_share: float = 0.2  # drills replayed during SFT so fine-tuning keeps the copy skill
    lr: float = 3e-3
    batch_tokens: int = 4096
    max_length: int = 1024
    threads: int = 2
    max_new_tokens: int = 160  # per assistant turn when scoring
    n_drills: int = 18000  # copy drills for the base (see copy_drills), packed drills_per_example at a time
    drills_per_example: int = 6


PRESETS = {
    "demo": ToyPoolSpec(),
    # the tests' pool: same world, smaller model and budget (its gate is not checked)
    "tests": ToyPoolSpec(shape=dict(TINY_SHAPE), vocab_size=1024, n_train=48, n_calibration=8, n_dev=6, n_test=6,
                         drill_steps=4, base_steps=4, expert_steps=8, max_new_tokens=24, n_drills=300),
}


def oracle_records(suite_name: str, split: str, n: int) -> list[dict]:
    suite = get_suite(suite_name)
    eps = run_episodes(suite, suite.tasks(split, n), OraclePolicy(suite), split)
    bad = [e.task_id for e in eps if e.reward < 1]
    if bad:  # the oracle solves every task by construction; anything else is a bug in the suite
        raise RuntimeError(f"{suite_name}: the oracle failed {bad[:3]}")
    return [training_record(e, suite.parser) for e in eps]


def _save(model, tokenizer, path: Path) -> None:
    from transformers import GenerationConfig

    model.generation_config = GenerationConfig(do_sample=False, eos_token_id=model.config.eos_token_id,
                                               pad_token_id=model.config.pad_token_id)
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)


def evaluate(model, tokenizer, suites, n_test: int, max_new_tokens: int = 160, batch_size: int = 40
             ) -> dict[str, float]:
    from arm_ray.rollout.policies import TransformersPolicy

    policy = TransformersPolicy(model, tokenizer, max_new_tokens=max_new_tokens, batch_size=batch_size)
    scores = {}
    for name in suites:
        suite = get_suite(name)
        eps = run_episodes(suite, suite.tasks("test", n_test), policy, "test")
        scores[name] = sum(e.reward for e in eps) / len(eps)
    return scores


def check_gate(scores: dict[str, dict[str, float]], min_score: float = 0.5, margin: float = 0.25) -> list[str]:
    """Where the pool misses the gate (empty: it passes)."""
    problems = []
    for suite in IN_DOMAIN:
        expert = f"expert_{suite}"
        mine = scores[expert][suite]
        if mine < min_score:
            problems.append(f"{expert} scores {mine:.2f} on {suite} (< {min_score})")
        for other, row in scores.items():
            if other != expert and mine - row[suite] < margin:
                problems.append(f"{expert} beats {other} on {suite} by {mine - row[suite]:.2f} (< {margin})")
    return problems


def score_table(scores: dict[str, dict[str, float]]) -> str:
    suites = list(OFFLINE_SUITES)
    lines = ["| model | " + " | ".join(suites) + " |", "|---|" + "---|" * len(suites)]
    for model, row in scores.items():
        lines.append(f"| {model} | " + " | ".join(f"{row[s]:.2f}" for s in suites) + " |")
    return "\n".join(lines)


def build_trained_pool(out: str | Path, preset: str = "demo", **overrides) -> Path:
    """Build (or reuse) the pool in `out`. Named from configs as `arm_ray.toy.trained:build_trained_pool`."""
    import torch
    import transformers
    from transformers import AutoModelForCausalLM

    from arm_ray.toy.train import make_examples, train

    spec = ToyPoolSpec(**{**asdict(PRESETS[preset]), **overrides})
    out = Path(out)
    stamp = pool_stamp({"version": VERSION, **asdict(spec)})
    if is_built(out, stamp):
        return out
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
        tok = train_bpe_tokenizer(tmp / "tokenizer", [_render(r) for r in train_records]
                                  + [f"{c}\n{r}" for c, r in drills], spec.vocab_size, split_digits=True,
                                  isolate_words=True)
        transformers.set_seed(spec.seed)
        stop = tok.convert_tokens_to_ids("<|im_end|>")
        base = AutoModelForCausalLM.from_config(qwen3_config(len(tok), spec.shape, stop, tok.pad_token_id),
                                                dtype=torch.float32)
        drill_ex = drill_examples(tok, drills, spec.drills_per_example)
        held_out = drill_examples(tok, copy_drills(spec.seed + 1, 120), spec.drills_per_example)
        # phase 1: drills only (copying has to emerge before the world's text can use it)
        losses = train(base, drill_ex, spec.drill_steps, spec.lr, spec.batch_tokens, spec.seed)
        copy_acc = {"after_drills": copy_accuracy(base, held_out)}
        log.info(f"[toy pool] base, drills: {spec.drill_steps} steps, loss {losses[0]:.2f} -> {losses[-1]:.2f}, "
                 f"copy accuracy {copy_acc['after_drills']:.3f} ({time.perf_counter() - t0:.0f} s)")
        world = make_examples(tok, train_records, "world", spec.max_length) + drill_ex
        losses = train(base, world, spec.base_steps, spec.lr, spec.batch_tokens, spec.seed + 100)
        copy_acc["base"] = copy_accuracy(base, held_out)
        log.info(f"[toy pool] base, world: {spec.base_steps} steps, loss {losses[0]:.2f} -> {losses[-1]:.2f}, "
                 f"copy accuracy {copy_acc['base']:.3f} ({time.perf_counter() - t0:.0f} s)")
        _save(base, tok, tmp / "base")
        models = {"base": tmp / "base"}
        for i, name in enumerate(IN_DOMAIN):
            expert = AutoModelForCausalLM.from_pretrained(tmp / "base", dtype=torch.float32)
            sft = make_examples(tok, data[name, "train"], "assistant", spec.max_length)
            n_replay = spec.expert_drill_share / (1 - spec.expert_drill_share) * len(sft)
            replay = drill_ex[:: max(1, round(len(drill_ex) / max(1.0, n_replay)))]  # spread over the drills
            losses = train(expert, sft + replay, spec.expert_steps, spec.lr, spec.batch_tokens, spec.seed + 1 + i)
            copy_acc[f"expert_{name}"] = copy_accuracy(expert, held_out)
            log.info(f"[toy pool] expert_{name}: {spec.expert_steps} steps, loss {losses[0]:.2f} -> "
                     f"{losses[-1]:.3f}, copy accuracy {copy_acc[f'expert_{name}']:.3f} "
                     f"({time.perf_counter() - t0:.0f} s)")
            _save(expert, tok, tmp / f"expert_{name}")
            models[f"expert_{name}"] = tmp / f"expert_{name}"
        scores = {}
        for model_name, path in models.items():
            model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32)
            scores[model_name] = evaluate(model, tok, list(OFFLINE_SUITES), spec.n_test, spec.max_new_tokens)
            log.info(f"[toy pool] scored {model_name}: {scores[model_name]} ({time.perf_counter() - t0:.0f} s)")
        (tmp / "scores.json").write_text(json.dumps(scores, indent=2) + "\n")
        (tmp / "spec.json").write_text(json.dumps(asdict(spec), indent=2) + "\n")
        (tmp / "copy_accuracy.json").write_text(json.dumps(copy_acc, indent=2) + "\n")
        (tmp / "STAMP").write_text(stamp + "\n")
    log.info(score_table(scores))
    log.info(f"[toy pool] built in {time.perf_counter() - t0:.0f} s")
    return out


def _render(record: dict) -> str:
    # the tokenizer is trained on the same text the chat template will produce
    from arm_ray.roles.template import compile_chat_template

    return compile_chat_template(CHAT_TEMPLATE).render(messages=record["messages"], tools=record.get("tools"),
                                                       add_generation_prompt=False)
