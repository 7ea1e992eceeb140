"""WIDEN (`arm_ray.widen`) against cases worked by hand from the authors' steps."""

import math

import pytest
import torch

from arm_ray import pool, widen
from arm_ray.errors import ConfigError

SIG = math.exp(0.5) / (math.exp(0.5) + 1)  # softmax(0.5, 0)[0]


def test_a_matrix_by_hand():
    # base I; expert 1 doubles column 0 (magnitude only), expert 2 turns column 1 by 45 degrees (both)
    base = {"w.weight": torch.eye(2)}
    experts = {"e1": {"w.weight": torch.tensor([[2.0, 0.0], [0.0, 1.0]])},
               "e2": {"w.weight": torch.tensor([[1.0, 1.0], [0.0, 1.0]])}}
    # magnitude changes [1, 0] and [0, 0.414] rank to [0.5, 0] and [0, 0.5]; softmax over experts, then 1 above
    # each expert's mean rank (0.25): e1 [1, 1 - SIG], e2 [1 - SIG, 1]. Direction changes [0, 0] (stable ranks
    # [0, 0.5]) and [0, 0.293] ([0, 0.5]): [0.5, 1] for both. Weights: e1 column 0 (1 + 0.5) / 2 = 0.75, e2 column 1
    # (1 + 1) / 2 = 1
    got = pool.build(pool.Recipe("w", "widen"), experts, base)["w.weight"]
    assert torch.allclose(got, torch.tensor([[1.75, 1.0], [0.0, 1.0]]), atol=1e-6)
    ranks = widen.rank(torch.tensor([[1.0, 0.0], [0.0, 0.0]]))
    assert ranks.tolist() == [[0.5, 0.0], [0.0, 0.5]]
    s = widen.scores(torch.tensor([[0.5, 0.0], [0.0, 0.5]]), 1.0, 1.0)
    assert torch.allclose(s, torch.tensor([[1.0, 1 - SIG], [1 - SIG, 1.0]]))


def test_a_vector_by_hand():
    # raw |delta| [1, 1] and [3, 0]: softmax per entry [0.119, 0.731] / [0.881, 0.269]; above each mean (1, 1.5):
    # only e2's first entry, set to 1. Merged delta [1 * 0.119 + 3 * 1, 1 * 0.731]
    base = {"n.weight": torch.zeros(2)}
    experts = {"e1": {"n.weight": torch.tensor([1.0, 1.0])}, "e2": {"n.weight": torch.tensor([3.0, 0.0])}}
    got = pool.build(pool.Recipe("w", "widen"), experts, base)["n.weight"]
    s0, s1 = 1 / (1 + math.exp(2)), 1 / (1 + math.exp(-1))
    assert torch.allclose(got, torch.tensor([s0 + 3.0, s1]), atol=1e-6)


def test_token_embeddings_are_weighted_per_token():
    # transposed as the authors do: each token (a row of the embedding) gets its own weight
    g = torch.Generator().manual_seed(0)
    emb = torch.randn(6, 4, generator=g)
    experts = {f"e{i}": {"model.embed_tokens.weight": emb + 0.1 * torch.randn(6, 4, generator=g)} for i in range(2)}
    got = pool.build(pool.Recipe("w", "widen"), experts, {"model.embed_tokens.weight": emb})
    want = widen.merge_matrix(emb.T, [e["model.embed_tokens.weight"].T for e in experts.values()], 1.0, 1.0).T
    assert torch.allclose(got["model.embed_tokens.weight"], want, atol=1e-6)
    same_name_untransposed = widen.merge_matrix(emb, [e["model.embed_tokens.weight"] for e in experts.values()],
                                                1.0, 1.0)
    assert not torch.allclose(want, same_name_untransposed)


def test_bad_parameters_are_named():
    with pytest.raises(ConfigError, match=r"operators\[2\]\.parameters\.alpha: unknown parameter for widen"):
        pool.validate(pool.Recipe("w", "widen", {"alpha": 1.0}), 2, "operators[2]")
    with pytest.raises(ConfigError, match="merges at least 2 experts"):
        pool.validate(pool.Recipe("w", "widen"), 1, "operators[2]")


def test_two_passes_over_blocks_give_the_whole_tensor_merge(monkeypatch):
    """The streamed form (column sums over blocks of rows) against the authors' whole-tensor steps."""
    g = torch.Generator().manual_seed(2)
    base = {"a.weight": torch.randn(200, 24, generator=g),
            "model.embed_tokens.weight": torch.randn(150, 24, generator=g), "n.weight": torch.randn(24, generator=g)}
    experts = {f"e{i}": {k: v + 0.05 * torch.randn(v.shape, generator=g) for k, v in base.items()} for i in range(3)}
    whole = pool.build(pool.Recipe("w", "widen"), experts, base)
    monkeypatch.setattr(pool, "BLOCK_BYTES", 4 * 24 * 4 * 32)  # 32 rows of each of 4 inputs per block: 7 and 5 blocks
    blocked = pool.build(pool.Recipe("w", "widen"), experts, base)
    # the authors' steps on whole tensors, in float64 (ranks of near-equal changes are only as exact as the sums)
    d = {k: [e[k].double() for e in experts.values()] for k in base}
    want = {"a.weight": widen.merge_matrix(base["a.weight"].double(), d["a.weight"], 1.0, 1.0).float(),
            "model.embed_tokens.weight": widen.merge_matrix(
                base["model.embed_tokens.weight"].double().T, [x.T for x in d["model.embed_tokens.weight"]],
                1.0, 1.0).T.float()}
    for k, v in want.items():
        assert torch.allclose(blocked[k], v, atol=1e-6) and torch.allclose(whole[k], v, atol=1e-6), k
    assert torch.equal(blocked["n.weight"], whole["n.weight"])
