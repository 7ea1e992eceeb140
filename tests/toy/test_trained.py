"""The trained pool: its layout and scores, the gate check, deterministic training, and ARM running on it."""

import json
import math
from pathlib import Path

import torch
import yaml

from arm_ray.toy.trained import build_trained_pool
from arm_ray.world import IN_DOMAIN, OFFLINE_SUITES
from tests.conftest import POOL_SEED


def test_layout_and_scores(trained_pool):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    names = ["base"] + [f"expert_{s}" for s in IN_DOMAIN]
    for name in names:
        model = AutoModelForCausalLM.from_pretrained(trained_pool / name)
        assert model.config.head_dim >= 32  # the smallest head vLLM's CPU attention takes
    tok = AutoTokenizer.from_pretrained(trained_pool / "tokenizer")
    assert "<tool_call>" in tok.apply_chat_template([{"role": "user", "content": "x"}], tools=[
        {"type": "function", "function": {"name": "f", "parameters": {}}}], tokenize=False)
    for suite in OFFLINE_SUITES:
        for split in ("train", "calibration", "dev"):
            lines = (trained_pool / "data" / suite / f"{split}.jsonl").read_text().splitlines()
            assert lines and all(json.loads(x)["benchmark"] for x in lines)
    scores = json.loads((trained_pool / "scores.json").read_text())
    assert sorted(scores) == sorted(names)
    sizes = json.loads((trained_pool / "task_vectors.json").read_text())
    assert sorted(sizes) == sorted(names[1:]) and all(0 < v["mlp"] and 0 < v["all"] for v in sizes.values())
    probe = json.loads((trained_pool / "probe.json").read_text())
    assert {e: p["suite"] for e, p in probe.items()} == {f"expert_{s}": s for s in IN_DOMAIN}
    assert all(sorted(row) == sorted(OFFLINE_SUITES) and all(0.0 <= v <= 1.0 for v in row.values())
               for row in scores.values())


def test_second_build_is_cached(trained_pool):
    stamp = (trained_pool / "STAMP").read_text()
    before = (trained_pool / "base" / "model.safetensors").stat().st_mtime_ns
    assert build_trained_pool(trained_pool, "tests", seed=POOL_SEED) == trained_pool
    assert (trained_pool / "STAMP").read_text() == stamp
    assert (trained_pool / "base" / "model.safetensors").stat().st_mtime_ns == before


def test_training_is_deterministic(trained_pool):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from arm_ray.experts.scoring import oracle_records
    from arm_ray.experts.sft import make_examples, train

    tok = AutoTokenizer.from_pretrained(trained_pool / "tokenizer")
    examples = make_examples(tok, oracle_records("shell", "train", 8), "assistant", 256)
    assert all(e.weights.sum() > 0 for e in examples)
    start = AutoModelForCausalLM.from_pretrained(trained_pool / "base").state_dict()
    runs = []
    for _ in range(2):
        model = AutoModelForCausalLM.from_pretrained(trained_pool / "base")
        losses = train(model, examples, 3, 1e-3, 1024, seed=5)
        runs.append((losses, model.state_dict()))
    (losses_a, a), (losses_b, b) = runs
    assert len(losses_a) == 3 and all(math.isfinite(x) and x > 0 for x in losses_a)
    assert losses_a == losses_b  # same seed, same batches, same floats
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert any(not torch.equal(a[k], start[k]) for k in a), "three steps at lr 1e-3 must move the weights"


def test_arm_runs_on_the_trained_pool(trained_pool, tmp_path):
    """configs/demo.yaml, pointed at the tests pool: the whole recipe runs on trained experts."""
    from arm_ray import pipeline
    from arm_ray.config import parse_config
    from arm_ray.tracing import LocalTracing

    text = (Path(__file__).parents[2] / "configs" / "demo.yaml").read_text()
    cfg = yaml.safe_load(text.replace("runs/_trained_pool", str(trained_pool)))
    cfg.pop("prepare")
    cfg.pop("evaluation")  # rollouts need vLLM actors: tests/actors/test_rollout.py runs this config with them
    cfg["weak"] = {"benchmarks": ["officebench", "agentbench_os"]}
    cfg["operators"] = [op for op in cfg["operators"] if op["name"] in ("average", "task_arithmetic")]
    cfg["resources"] = {"tracers": 1, "tracer_num_cpus": 0.25, "coordinator_num_cpus": 0.1, "torch_threads": 1}
    report = pipeline.run(parse_config(cfg), tmp_path / "run", lambda ctx: LocalTracing(ctx.sources("cpu")))
    assert report["selected"] in {"average", "task_arithmetic"}
    assert set(report["benchmarks"]) == {"tau_bench", "officebench", "agentbench_os"}
    assert (tmp_path / "run" / "model" / "config.json").is_file()


def test_toy_tokenizer_keeps_words_whole_across_contexts(trained_pool):
    """A value copied from prose into JSON is the same token sequence (what copy heads match on)."""
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(trained_pool / "tokenizer")

    def ids(text, value):
        enc = tok(text, add_special_tokens=False, return_offsets_mapping=True)
        start = text.index(value)
        return [i for i, (a, b) in zip(enc["input_ids"], enc["offset_mapping"]) if a >= start and b <= start + len(value)]

    for value in ("Li Patel", "launch.csv", "W6574", "46065"):
        prose = f"I am {value}, thanks."
        js = json.dumps({"name": value})
        assert ids(prose, value) == ids(js, value) != []
        assert tok.decode(ids(prose, value)) == value
    # a space between words rides on the word before it, never on the word after it (by the pre-tokenizer, for
    # any build: whether "Hello" and its space merge into one token depends on the merges the build learned)
    tokens = tok.tokenize("Hello I am Li Patel and my zip is 46065")
    assert tokens and not any(t.startswith("Ġ") and t.strip("Ġ") for t in tokens), tokens
    assert tok.convert_tokens_to_string(tokens) == "Hello I am Li Patel and my zip is 46065"
