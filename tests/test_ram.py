"""RAM and RAM+ as their authors define them (`arm_ray.ram`), against a case worked by hand."""

import pytest
import torch

from arm_ray import pool
from arm_ray.errors import ConfigError


def _hand_case():
    # 8 entries over two tensors, base 1 everywhere; expert 1 changes 4 (one more below the 1e-5 threshold), expert 2
    # changes 5; they share 2: rho_1 = 2/4, rho_2 = 2/5
    base = {"m.weight": torch.ones(2, 3), "v.bias": torch.ones(2)}
    d1 = {"m.weight": torch.tensor([[0.2, 0.4, 0.0], [1e-6, 0.1, 0.5]]), "v.bias": torch.tensor([0.0, 0.0])}
    d2 = {"m.weight": torch.tensor([[0.4, 0.0, 0.6], [0.0, -0.1, 0.0]]), "v.bias": torch.tensor([0.2, 0.3])}
    experts = {"e1": {k: base[k] + d1[k] for k in base}, "e2": {k: base[k] + d2[k] for k in base}}
    return base, experts


def test_ram_official_by_hand():
    base, experts = _hand_case()
    got = pool.build(pool.Recipe("ram", "ram_official"), experts, base)
    # shared entries: the mean of the changed deltas; one expert's: its delta; nobody's (or below 1e-5): the base
    assert torch.allclose(got["m.weight"], torch.tensor([[1.3, 1.4, 1.6], [1.0, 1.0, 1.5]]), atol=1e-6)
    assert got["m.weight"][1, 0] == 1.0  # 1e-6 is no change: the base's value exactly
    assert torch.allclose(got["v.bias"], torch.tensor([1.2, 1.3]), atol=1e-6)


def test_ramplus_official_by_hand():
    base, experts = _hand_case()
    got = pool.build(pool.Recipe("ram+", "ramplus_official"), experts, base)  # r = 1.2
    lam1, lam2 = 1 + 0.2 * 2 / 4, 1 + 0.2 * 2 / 5  # 1.1 and 1.08, from the whole model's counts
    want_m = torch.tensor([[1.3, 1 + 0.4 * lam1, 1 + 0.6 * lam2], [1.0, 1.0, 1 + 0.5 * lam1]])
    assert torch.allclose(got["m.weight"], want_m, atol=1e-6)
    assert torch.allclose(got["v.bias"], torch.tensor([1 + 0.2 * lam2, 1 + 0.3 * lam2]), atol=1e-6)
    # r and the threshold are parameters: r = 1 is RAM; a threshold above 0.45 leaves only the larger deltas
    assert all(torch.equal(a, b) for a, b in zip(
        pool.build(pool.Recipe("x", "ramplus_official", {"r": 1.0}), experts, base).values(),
        pool.build(pool.Recipe("y", "ram_official"), experts, base).values()))
    high = pool.build(pool.Recipe("z", "ram_official", {"threshold": 0.45}), experts, base)
    assert torch.allclose(high["m.weight"], torch.tensor([[1.0, 1.0, 1.6], [1.0, 1.0, 1.5]]), atol=1e-6)


def _random(n_experts=3, sparse=False):
    g = torch.Generator().manual_seed(1)
    base = {"a.weight": torch.randn(70, 16, generator=g), "b.weight": torch.randn(16, generator=g)}
    experts = {}
    for i in range(n_experts):
        experts[f"e{i}"] = {}
        for k, v in base.items():
            d = 0.05 * torch.randn(v.shape, generator=g)
            if sparse:  # an RL-like update: a random fifth of the entries
                d = d * (torch.rand(v.shape, generator=g) < 0.2)
            experts[f"e{i}"][k] = v + d
    return base, experts


@pytest.mark.parametrize("method", ["ram_official", "ramplus_official"])
def test_blocks_of_rows_give_the_whole_tensors_bits(method, monkeypatch):
    base, experts = _random(sparse=True)
    whole = pool.build(pool.Recipe(method, method), experts, base)
    monkeypatch.setattr(pool, "BLOCK_BYTES", 16 * 4 * 4 * 8)  # 32 rows of 4 inputs: a.weight in 3 blocks
    read_rows = []
    models = {pool.BASE: base, **experts}

    def read(model, name, rows):
        read_rows.append(rows)
        t = models[model][name]
        return t if rows is None else t[rows[0]:rows[1]]

    shapes = {k: tuple(v.shape) for k, v in base.items()}
    got = dict(pool.stream(pool.Recipe(method, method), shapes, list(experts), read, lambda n: 16 * 4))
    assert {r for r in read_rows if r is not None} == {(0, 32), (32, 64), (64, 70)}
    assert all(torch.equal(got[k], whole[k]) for k in whole)


def test_dense_updates_reduce_ram_to_averaging_and_sparse_ones_do_not():
    # the issue's point: SFT experts change nearly every entry, so the authors' RAM is the average of the experts
    base, experts = _random(sparse=False)
    ram = pool.build(pool.Recipe("r", "ram_official"), experts, base)
    average = {k: sum(e[k] for e in experts.values()) / len(experts) for k in base}
    # (a normal delta of sd 0.05 falls under 1e-5 at about 1 entry in 6,000: those differ)
    close = sum(int(torch.isclose(ram[k], average[k], atol=1e-6).sum()) for k in base)
    assert close >= 0.995 * sum(v.numel() for v in base.values())
    base, experts = _random(sparse=True)
    ram = pool.build(pool.Recipe("r", "ram_official"), experts, base)
    average = {k: sum(e[k] for e in experts.values()) / len(experts) for k in base}
    assert not torch.allclose(ram["a.weight"], average["a.weight"], atol=1e-3)


def test_bfloat16_inputs_merge_in_float32_and_come_back_in_bfloat16():
    base, experts = _hand_case()
    to = lambda sd: {k: v.to(torch.bfloat16) for k, v in sd.items()}  # noqa: E731
    got = pool.build(pool.Recipe("r", "ramplus_official"), {e: to(sd) for e, sd in experts.items()}, to(base))
    assert got["m.weight"].dtype == torch.bfloat16


@pytest.mark.parametrize("params,n,match", [
    ({"rho": 1}, 2, r"operators\[0\] \(r\)\.parameters\.rho: unknown parameter for ramplus_official; expected one "
                    "of threshold, r"),
    ({"r": 0.9}, 2, r"parameters\.r: must be >= 1"),
    ({"threshold": "small"}, 2, r"parameters\.threshold: ramplus_official takes a number"),
    ({}, 1, "merges at least 2 experts, the pool has 1"),
])
def test_bad_parameters_are_named_before_any_weight_is_read(params, n, match):
    with pytest.raises(ConfigError, match=match):
        pool.validate(pool.Recipe("r", "ramplus_official", params), n, "operators[0] (r)")
