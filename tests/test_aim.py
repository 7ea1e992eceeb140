"""AIM (`arm_ray.aim`): the relaxation against a hand-worked case, the base's input importance against activations
read another way, and an AIM candidate through a run."""

import json

import pytest
import torch

from arm_ray import aim, pipeline, pool
from arm_ray.checkpoints import open_checkpoint, read_tensor_file, write_tensor_file
from arm_ray.config import parse_config
from arm_ray.errors import ConfigError
from arm_ray.saliency import Pack
from arm_ray.stages import STORE
from arm_ray.tracing import LocalTracing
from tests.conftest import tiny_config


def test_relax_by_hand():
    base = torch.tensor([[1.0, 2.0], [3.0, 4.0]])
    merged = torch.tensor([[3.0, 2.0], [3.0, 8.0]])
    a = torch.tensor([1.0, 0.5])  # input channel 0 is the base's busiest
    # factor 1 - a (1 - 0.4) = [0.4, 0.7] per column; deltas [[2, 0], [0, 4]]
    assert torch.allclose(aim.relax(merged, base, a, 0.4), torch.tensor([[1.8, 2.0], [3.0, 6.8]]))
    assert torch.equal(aim.relax(merged, base, torch.zeros(2), 0.4), merged)  # an unused channel keeps the merge
    assert torch.equal(aim.relax(merged, base, torch.ones(2), 0.0), base)  # omega 0 on the busiest: the base
    norm = aim.relax(torch.tensor([2.0, 2.0]), torch.ones(2), torch.tensor([1.0, 0.0]), 0.4)  # a norm's weight
    assert torch.allclose(norm, torch.tensor([1.4, 2.0]))
    with pytest.raises(ValueError, match="3 channels"):
        aim.relax(merged, base, torch.ones(3), 0.4)


def _tiny_llama(tied: bool):
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=64, hidden_size=32, intermediate_size=48, num_hidden_layers=2, num_attention_heads=2,
                      num_key_value_heads=1, head_dim=16, max_position_embeddings=128, tie_word_embeddings=tied)
    return LlamaForCausalLM(cfg).eval()


def _packs():
    g = torch.Generator().manual_seed(3)
    out = []
    for n in (12, 7):  # two packs of different length; each holds two sequences
        ids = torch.randint(0, 64, (1, n), generator=g)
        pos = torch.cat([torch.arange(5), torch.arange(n - 5)]).unsqueeze(0)
        out.append(Pack(ids, pos, torch.arange(n), torch.zeros(n, dtype=torch.long), torch.ones(n)))
    return out


@pytest.mark.parametrize("tied", [True, False])
def test_importance_is_the_bases_mean_input_per_channel(tied):
    model = _tiny_llama(tied)
    a = aim.importance(model, _packs())
    # every weight but the embedding's own: 7 Linears and 2 norms per layer, the final norm, the head
    names = {n for n, _ in model.named_parameters()}
    assert len(a) == 2 * 9 + 2
    head = "model.embed_tokens.weight" if tied else "lm_head.weight"  # a tied head is named by the embedding
    assert head in a and (tied or "model.embed_tokens.weight" not in a)
    assert all(k in names for k in a)
    # read again from the decoder's hidden states: layer 0's inputs are the embeddings; the head's input the output
    hid, head = [], []
    with torch.no_grad():
        for p in _packs():
            out = model.model(input_ids=p.input_ids, position_ids=p.position_ids, output_hidden_states=True,
                              use_cache=False)  # packed: block-diagonal attention from the positions
            hid.append(out.hidden_states[0][0])
            head.append(out.last_hidden_state[0])
    h0, last = torch.cat(hid), torch.cat(head)
    norm0 = model.model.layers[0].input_layernorm
    want = {"model.layers.0.input_layernorm.weight": h0.abs().mean(0),
            "model.layers.0.self_attn.q_proj.weight": norm0(h0).abs().mean(0),
            ("model.embed_tokens.weight" if tied else "lm_head.weight"): last.abs().mean(0)}
    for k, v in want.items():
        assert torch.allclose(a[k], v / v.max(), atol=1e-5), k
    assert a["model.layers.1.mlp.down_proj.weight"].shape == (48,)  # down_proj's input is d_ff wide
    assert all(float(v.max()) == 1.0 and float(v.min()) >= 0 for v in a.values())


def test_an_aim_recipe_relaxes_its_merge_tensor_by_tensor(tmp_path, monkeypatch):
    g = torch.Generator().manual_seed(0)
    base = {"m.weight": torch.randn(4, 3, generator=g), "m.bias": torch.randn(4, generator=g),
            "e.weight": torch.randn(5, 3, generator=g)}
    experts = {f"x{i}": {k: v + 0.1 * torch.randn(v.shape, generator=g) for k, v in base.items()} for i in range(2)}
    a = {"m.weight": torch.tensor([1.0, 0.25, 0.0])}
    write_tensor_file(tmp_path / "a.safetensors", a)
    plain = pool.build(pool.Recipe("avg", "linear", {"weight": 1.0}), experts, base)
    got = pool.build(pool.Recipe("avg_aim", "linear", {"weight": 1.0}, aim=0.4,
                                 importance=str(tmp_path / "a.safetensors")), experts, base)
    factor = torch.tensor([0.4, 0.85, 1.0])
    assert torch.allclose(got["m.weight"], base["m.weight"] + (plain["m.weight"] - base["m.weight"]) * factor)
    assert torch.equal(got["m.bias"], plain["m.bias"]) and torch.equal(got["e.weight"], plain["e.weight"])
    monkeypatch.setattr(aim, "BLOCK_BYTES", 12)  # one row of m.weight at a time: the same numbers
    blocks = pool.build(pool.Recipe("avg_aim", "linear", {"weight": 1.0}, aim=0.4,
                                    importance=str(tmp_path / "a.safetensors")), experts, base)
    assert all(torch.equal(blocks[k], got[k]) for k in got)
    with pytest.raises(ValueError, match="importance"):
        pool.build(pool.Recipe("avg_aim", "linear", {"weight": 1.0}, aim=0.4), experts, base)


def test_omega_out_of_range_is_a_config_error(perturbed_pool):
    cfg = tiny_config(perturbed_pool)
    cfg["operators"][0]["aim"] = 1.5
    with pytest.raises(ConfigError, match=r"operators\.0\.aim"):
        parse_config(cfg)


def test_aim_candidate_in_a_run(perturbed_pool, tmp_path):
    ops = [{"name": "average", "method": "linear", "parameters": {"weight": 1.0}},
           {"name": "average_aim", "method": "linear", "parameters": {"weight": 1.0}, "aim": 0.4}]
    cfg = parse_config(tiny_config(perturbed_pool, operators=ops))
    out = tmp_path / "run"
    report = pipeline.run(cfg, out, lambda ctx: LocalTracing(ctx.sources("cpu")))
    cands = {c["name"]: c for c in report["candidates"]}
    assert cands["average_aim"]["aim"] == 0.4 and cands["average"]["aim"] is None
    assert cands["average_aim"]["aos"] != cands["average"]["aos"]  # the relaxed merge is traced as its own model
    a = read_tensor_file(out / STORE / pipeline.IMPORTANCE)
    assert json.loads((out / STORE / "aim.json").read_text())["key"]
    # the candidate written for evaluation is base + (average - base) * (1 - a * 0.6), recomputed here
    tracing = LocalTracing(pipeline.prepare(cfg).sources("cpu"))
    for name, importance in (("average", None), ("average_aim", str(out / STORE / pipeline.IMPORTANCE))):
        tracing.write_candidate(pool.Recipe(name, "linear", {"weight": 1.0}, aim=None if importance is None else 0.4,
                                            importance=importance), str(tmp_path / name), 1 << 30, None)
    avg = open_checkpoint(str(tmp_path / "average")).load_state_dict()
    relaxed = open_checkpoint(str(tmp_path / "average_aim")).load_state_dict()
    b = open_checkpoint(str(perturbed_pool / "base")).load_state_dict()
    assert set(a) <= set(b)  # the checkpoint's own names (this tied toy: every weight, the embedding as the head)
    for k in b:
        want = b[k] + (avg[k] - b[k]) * (1 - a[k] * 0.6) if k in a else avg[k]
        assert torch.allclose(relaxed[k].float(), want.float(), atol=1e-6), k
    assert any(not torch.equal(relaxed[k], avg[k]) for k in a)
