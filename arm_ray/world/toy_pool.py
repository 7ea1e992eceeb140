"""The trained toy expert pool: a tiny Qwen3 base and one SFT expert per in-domain suite.

    build_toy_pool(out, preset="demo")   # or scripts/make_toy_pool.py --out DIR

Writes, deterministically from the seed and cached by its inputs (STAMP):
    tokenizer/                 byte-level BPE trained on the world's text, Qwen3-style chat template
    base/                      trained on the world's generic text (everything but assistant turns)
    expert_<suite>/            base fine-tuned on the oracle's episodes of its suite's train split
    data/<suite>/<split>.jsonl oracle episodes (calibration, dev, train) for the roles layer
    scores.json                {model: {suite: score}} on each suite's test split
The gate (issue 4): each in-domain expert scores >= 0.5 on its suite and beats
the base and every other expert there by >= 0.25; `check_gate` says where not.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from arm_ray.checkpoints import atomic_dir
from arm_ray.demo import is_built, pool_stamp, qwen3_config, train_bpe_tokenizer, write_jsonl
from arm_ray.world import IN_DOMAIN, SUITES, get_suite
from arm_ray.world.agent import OraclePolicy, run_episodes, training_record

VERSION = 1


@dataclass
class ToyPoolSpec:
    seed: int = 0
    vocab_size: int = 2048
    shape: dict = field(default_factory=lambda: dict(hidden_size=256, intermediate_size=768, num_hidden_layers=4,
                                                      num_attention_heads=4, num_key_value_heads=2, head_dim=64))
    n_train: int = 400  # oracle episodes per suite for training
    n_calibration: int = 32
    n_dev: int = 24
    n_test: int = 40
    base_steps: int = 300
    expert_steps: int = 250
    lr: float = 3e-3
    batch_tokens: int = 4096
    max_length: int = 768
    threads: int = 2
    max_new_tokens: int = 160  # per assistant turn when scoring
    n_notes: int = 6000  # short world-text notes for the base (see world_notes)


PRESETS = {
    "demo": ToyPoolSpec(),
    # the tests' pool: same world, smaller model and budget (its gate is not checked)
    "tests": ToyPoolSpec(shape=dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                                    num_attention_heads=2, num_key_value_heads=1, head_dim=32),
                         vocab_size=1024, n_train=48, n_calibration=8, n_dev=6, n_test=6,
                         base_steps=4, expert_steps=8, max_new_tokens=24, n_notes=200),
}


def world_notes(seed: int, n: int) -> list[str]:
    """Generic text of the world: facts stated in prose, then restated as JSON or in a short reply.

    The base model reads these besides the episodes' non-assistant text. Each note
    mentions the same names, ids and amounts twice in different surroundings, which
    is what teaches a small model to copy a value from context, the skill every
    suite's actions need (their SFT data alone is too small to teach it).
    """
    import random

    from arm_ray.world.office import PEOPLE, TOPICS
    from arm_ray.world.retail import FIRST, LAST
    from arm_ray.world.shell import WORDS

    rng = random.Random(f"notes:{seed}")
    notes = []
    for _ in range(n):
        name = f"{rng.choice(FIRST).title()} {rng.choice(LAST).title()}"
        zip_, oid = f"{rng.randint(10000, 99999)}", f"#W{rng.randint(1000, 9999)}"
        amount, count = str(rng.randint(1, 9999)), str(rng.randint(0, 400))
        word, topic, who = rng.choice(WORDS), rng.choice(TOPICS), rng.choice(PEOPLE)
        date = f"2025-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}"
        notes.append(rng.choice([
            f"{name} lives in zip {zip_} and placed order {oid}. "
            + json.dumps({"name": name, "zip": zip_, "order_id": oid}),
            f"Order {oid} costs ${amount}. " + json.dumps({"order_id": oid, "total": amount})
            + f" The total of order {oid} is ${amount}.",
            f"The {topic} sheet says {amount}. " + json.dumps({"to": f"{who}@corp.com", "body": amount}),
            f"The {topic} meeting with {who} is on {date}. " + json.dumps({"title": f"{topic} meeting",
                                                                            "date": date}),
            f"The output of the OS:\n\n{count}\nSo the answer is {count}. Act: answer({count})",
            f"The file {word}.txt holds the word {word}: echo {word} > {word}.txt",
        ]))
    return notes


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
    from arm_ray.world.generate import TransformersPolicy

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
    suites = list(SUITES)
    lines = ["| model | " + " | ".join(suites) + " |", "|---|" + "---|" * len(suites)]
    for model, row in scores.items():
        lines.append(f"| {model} | " + " | ".join(f"{row[s]:.2f}" for s in suites) + " |")
    return "\n".join(lines)


def build_toy_pool(out: str | Path, preset: str = "demo", log=print, **overrides) -> Path:
    """Build (or reuse) the pool in `out`. Named from configs as `arm_ray.world.toy_pool:build_toy_pool`."""
    import torch
    import transformers
    from transformers import AutoModelForCausalLM

    from arm_ray.world.train import make_examples, pack_texts, train

    spec = ToyPoolSpec(**{**asdict(PRESETS[preset]), **overrides})
    out = Path(out)
    stamp = pool_stamp({"version": VERSION, **asdict(spec)})
    if is_built(out, stamp):
        return out
    t0 = time.perf_counter()
    torch.set_num_threads(spec.threads)
    with atomic_dir(out, overwrite=True) as tmp:
        data = {}
        for name in SUITES:
            for split, n in (("train", spec.n_train), ("calibration", spec.n_calibration), ("dev", spec.n_dev)):
                data[name, split] = oracle_records(name, split, n)
                write_jsonl(tmp / "data" / name / f"{split}.jsonl", data[name, split])
        log(f"[toy pool] oracle episodes written ({time.perf_counter() - t0:.0f} s)")

        train_records = [r for name in SUITES for r in data[name, "train"]]
        notes = world_notes(spec.seed, spec.n_notes)
        tok = train_bpe_tokenizer(tmp / "tokenizer", [_render(r) for r in train_records] + notes, spec.vocab_size,
                                  split_digits=True)
        transformers.set_seed(spec.seed)
        stop = tok.convert_tokens_to_ids("<|im_end|>")
        base = AutoModelForCausalLM.from_config(qwen3_config(len(tok), spec.shape, stop, tok.pad_token_id),
                                                dtype=torch.float32)
        world = make_examples(tok, train_records, "world", spec.max_length)
        world += pack_texts(tok, notes, spec.max_length // 2)
        losses = train(base, world, spec.base_steps, spec.lr, spec.batch_tokens, spec.seed)
        log(f"[toy pool] base: {spec.base_steps} steps, loss {losses[0]:.2f} -> {losses[-1]:.2f} "
            f"({time.perf_counter() - t0:.0f} s)")
        _save(base, tok, tmp / "base")
        models = {"base": tmp / "base"}
        for i, name in enumerate(IN_DOMAIN):
            expert = AutoModelForCausalLM.from_pretrained(tmp / "base", dtype=torch.float32)
            sft = make_examples(tok, data[name, "train"], "assistant", spec.max_length)
            losses = train(expert, sft, spec.expert_steps, spec.lr, spec.batch_tokens, spec.seed + 1 + i)
            log(f"[toy pool] expert_{name}: {spec.expert_steps} steps, loss {losses[0]:.2f} -> {losses[-1]:.3f} "
                f"({time.perf_counter() - t0:.0f} s)")
            _save(expert, tok, tmp / f"expert_{name}")
            models[f"expert_{name}"] = tmp / f"expert_{name}"
        scores = {}
        for model_name, path in models.items():
            model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32)
            scores[model_name] = evaluate(model, tok, list(SUITES), spec.n_test, spec.max_new_tokens)
            log(f"[toy pool] scored {model_name}: {scores[model_name]} ({time.perf_counter() - t0:.0f} s)")
        (tmp / "scores.json").write_text(json.dumps(scores, indent=2) + "\n")
        (tmp / "spec.json").write_text(json.dumps(asdict(spec), indent=2) + "\n")
        (tmp / "STAMP").write_text(stamp + "\n")
    log(score_table(scores))
    log(f"[toy pool] built in {time.perf_counter() - t0:.0f} s")
    return out


def _render(record: dict) -> str:
    # the tokenizer is trained on the same text the chat template will produce
    from arm_ray.demo import CHAT_TEMPLATE
    from arm_ray.roles.template import compile_chat_template

    return compile_chat_template(CHAT_TEMPLATE).render(messages=record["messages"], tools=record.get("tools"),
                                                       add_generation_prompt=False)
