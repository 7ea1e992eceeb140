import json

import pytest
import torch

from arm_ray.experts.scoring import check_gate, task_vector_size
from arm_ray.world import IN_DOMAIN, OFFLINE_SUITES


def test_build_gate_check():
    ok = {"base": {s: 0.3 if s in IN_DOMAIN else 0.1 for s in OFFLINE_SUITES}}
    for s in IN_DOMAIN:
        ok[f"expert_{s}"] = {t: (0.8 if t == s else 0.2) for t in OFFLINE_SUITES}
    assert check_gate(ok) == []
    bad = json.loads(json.dumps(ok))
    bad["base"]["retail"] = 0.7  # within 0.2 of the retail expert
    bad["expert_shell"]["shell"] = 0.4
    problems = check_gate(bad)
    assert any("expert_retail beats the base on retail by 0.10" in p for p in problems)
    assert any("expert_shell scores 0.40 on shell" in p for p in problems)
    assert len(problems) == 3  # and the shell expert is within 0.2 of its base (0.4 - 0.3)
    bad["base"]["sql"] = 0.0  # out of domain at 0: retention there cannot be measured
    assert check_gate(bad)[-1] == "base scores 0 on sql"


def test_task_vector_size():
    base = {"model.layers.0.mlp.up_proj.weight": torch.tensor([3.0, 4.0]), "model.embed.weight": torch.ones(4)}
    expert = {"model.layers.0.mlp.up_proj.weight": torch.tensor([3.0, 4.5]), "model.embed.weight": torch.ones(4)}
    sizes = task_vector_size(base, expert)
    assert sizes["mlp"] == pytest.approx(0.5 / 5) and sizes["all"] == pytest.approx(0.5 / 29 ** 0.5)


def test_logits_where_counted_and_micro_batches_are_the_same_update():
    """The output layer at counted positions only, and a batch forwarded in parts, give the full batch's loss and
    update (up to the order of float sums)."""
    import numpy as np
    from transformers import LlamaConfig, LlamaForCausalLM

    from arm_ray.experts.sft import Example, train

    rng = np.random.default_rng(0)
    examples = [Example(rng.integers(0, 300, n), (rng.random(n) < 0.3).astype(np.float32)) for n in (20, 31, 17)]
    cfg = LlamaConfig(vocab_size=300, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                      num_attention_heads=2, num_key_value_heads=1, head_dim=16, tie_word_embeddings=True)
    torch.manual_seed(0)
    start = LlamaForCausalLM(cfg).state_dict()
    runs = []
    for where, micro in ((False, None), (True, None), (True, 32)):
        model = LlamaForCausalLM(cfg)
        model.load_state_dict(start)
        runs.append((train(model, examples, 3, 1e-3, 64, 0, bf16=False, logits_where_counted=where,
                           micro_batch_tokens=micro), model.state_dict()))
    (full, a) = runs[0]
    for losses, b in runs[1:]:
        assert losses == pytest.approx(full, rel=1e-5)
        assert max(float((a[k] - b[k]).abs().max()) for k in a) < 1e-4  # Adam: lr 1e-3, 3 steps
