"""Candidates merged tensor by tensor: the same weights as mergekit's whole-state-dict merge."""

import pytest
import torch

from arm_ray import pool

DETERMINISTIC = [("linear", {"weight": 1.0}), ("task_arithmetic", {"weight": 0.5}),
                 ("ties", {"weight": 1.0, "density": 0.5}), ("model_stock", {"filter_wise": False}), ("ram", {})]


def _models(n_experts=3):
    g = torch.Generator().manual_seed(0)
    shapes = {"a.weight": (40, 16), "b.weight": (16,), "embed.weight": (300, 16)}
    base = {k: torch.randn(s, generator=g) for k, s in shapes.items()}
    experts = {f"e{i}": {k: v + 0.1 * torch.randn(v.shape, generator=g) for k, v in base.items()}
               for i in range(n_experts)}
    return base, experts


def _whole(method, params, base, experts):
    from mergekit.merge_methods import merge_state_dicts

    models = {pool.BASE: base, **experts} if pool.uses_base(method) else dict(experts)
    return merge_state_dicts(models, method, base=pool.BASE if pool.uses_base(method) else None,
                             parameters=params, out_dtype=torch.float32)


@pytest.mark.parametrize("method,params", DETERMINISTIC)
def test_streamed_merge_equals_mergekits_whole_merge(method, params):
    base, experts = _models()
    got = pool.build(pool.Recipe(method, method, params), experts, base)
    want = _whole(method, params, base, experts)
    assert sorted(got) == sorted(want)
    for k in want:
        assert torch.equal(got[k], want[k]), (method, k)


def _build_in_blocks(recipe, experts, base):
    """pool.build, also returning how many distinct blocks of rows were read."""
    models = {pool.BASE: base, **experts}
    first = next(iter(base.values()))
    blocks = set()

    def read(model, name, rows):
        blocks.add((name, rows))
        t = models[model][name]
        return t if rows is None else t[rows[0]:rows[1]]

    shapes = {k: tuple(v.shape) for k, v in base.items()}
    row_bytes = lambda n: base[n][0].numel() * first.element_size()  # noqa: E731
    merged = dict(pool.stream(recipe, shapes, list(experts), read, row_bytes))
    return merged, sum(1 for _, rows in blocks if rows is not None)


BLOCKWISE = [("linear", {"weight": 1.0}), ("task_arithmetic", {"weight": 0.5}), ("ram", {}),
             ("model_stock", {"filter_wise": True})]  # filter-wise Model Stock compares row with row


@pytest.mark.parametrize("n_experts", [3, 5])
@pytest.mark.parametrize("method,params", BLOCKWISE)
def test_row_blocks_equal_the_whole_tensor(method, params, n_experts, monkeypatch):
    """Row-separable methods merge large tensors in blocks of rows: the same bits as mergekit's whole merge. With 5
    experts float32 sums over the stacked inputs differ in the last bit unless blocks hold whole chunks of 32."""
    base, experts = _models(n_experts)
    want = _whole(method, params, base, experts)
    monkeypatch.setattr(pool, "BLOCK_BYTES", 16 * 4 * 7)  # 32 rows per block
    got, n_blocks = _build_in_blocks(pool.Recipe(method, method, params), experts, base)
    assert n_blocks == 10 + 2  # embed (300 rows) and a (40 rows)
    assert all(torch.equal(want[k], got[k]) for k in want)


def test_rows_per_block_keeps_the_budget_in_whole_chunks_of_32_rows():
    assert pool.rows_per_block(7) == 32 and pool.rows_per_block(0) == 32
    assert pool.rows_per_block(33) == 64 and pool.rows_per_block(64) == 64


@pytest.mark.parametrize("n_experts", [3, 5])
def test_model_stock_in_row_blocks_is_mergekits_merge(n_experts, monkeypatch):
    """Model Stock's scalar t comes from the whole tensor's task-vector dot products, summed over blocks: in bf16 the
    same bits as mergekit; in float32 the sums are added in another order, so t (and the weights) may move by an ulp."""
    params = {"filter_wise": False}
    base, experts = _models(n_experts)
    monkeypatch.setattr(pool, "BLOCK_BYTES", 16 * 4 * 7)
    got, n_blocks = _build_in_blocks(pool.Recipe("ms", "model_stock", params), experts, base)
    assert n_blocks == 10 + 2
    want = _whole("model_stock", params, base, experts)
    for k in want:
        torch.testing.assert_close(got[k], want[k], rtol=1e-6, atol=1e-6)
    bf = lambda sd: {k: v.to(torch.bfloat16) for k, v in sd.items()}  # noqa: E731
    base, experts = bf(base), {e: bf(sd) for e, sd in experts.items()}
    monkeypatch.setattr(pool, "BLOCK_BYTES", 16 * 2 * 7)
    got, n_blocks = _build_in_blocks(pool.Recipe("ms", "model_stock", params), experts, base)
    assert n_blocks == 10 + 2
    from mergekit.merge_methods import merge_state_dicts

    want = merge_state_dicts({pool.BASE: base, **experts}, "model_stock", base=pool.BASE, parameters=params,
                             out_dtype=torch.bfloat16)
    assert all(torch.equal(want[k], got[k]) for k in want)
    assert not torch.equal(got["embed.weight"], base["embed.weight"])  # the experts did move it


def test_dare_draws_per_tensor_and_block_so_order_does_not_matter(monkeypatch):
    base, experts = _models()
    r = pool.Recipe("dare", "dare_ties", {"weight": 1.0, "density": 0.5}, seed=3)
    monkeypatch.setattr(pool, "BLOCK_BYTES", 16 * 4 * 7)
    a = pool.build(r, experts, base)
    rev = {e: dict(reversed(list(sd.items()))) for e, sd in experts.items()}
    torch.manual_seed(123)  # the global generator's state does not leak in
    b = pool.build(r, rev, dict(reversed(list(base.items()))))
    assert all(torch.equal(a[k], b[k]) for k in a)
    c = pool.build(pool.Recipe("dare", "dare_ties", {"weight": 1.0, "density": 0.5}, seed=4), experts, base)
    assert not torch.equal(a["embed.weight"], c["embed.weight"])  # another seed, other draws
    # DARE keeps about `density` of each task vector: the merged delta is zero where no expert kept an entry
    assert 0.05 < float((a["embed.weight"] == base["embed.weight"]).float().mean()) < 0.3
    assert pool.tensor_seed(0, "x", 0) != pool.tensor_seed(0, "x", 1) != pool.tensor_seed(1, "x", 0)


def test_custom_operator_sees_lazy_state_dicts():
    base, experts = _models(2)
    seen = []

    def read(model, name, rows):
        seen.append((model, name))
        return (base if model == pool.BASE else experts[model])[name]

    from examples.custom_operator import task_vector_median

    def op(ex, b, params):
        assert all(isinstance(sd, pool.LazyStateDict) for sd in ex.values()) and not seen
        return task_vector_median(ex, b, params)

    import sys
    import types

    mod = types.ModuleType("_lazy_op")
    mod.op = op
    sys.modules["_lazy_op"] = mod
    try:
        out = dict(pool.stream(pool.Recipe("m", "_lazy_op:op", {"scale": 1.0}),
                               {k: tuple(v.shape) for k, v in base.items()}, list(experts), read))
    finally:
        del sys.modules["_lazy_op"]
    assert sorted(out) == sorted(base) and seen


TIES = [{"weight": 1.0, "density": 0.5},
        {"weight": {"e0": 0.3, "e1": 1.0, "e2": 0.7}, "density": {"e0": 0.2, "e1": 0.9, "e2": 1.0}, "lambda": 0.8},
        {"weight": 1.0, "density": 0.3, "normalize": False, "int8_mask": True},
        {"weight": 1.0, "density": 0.5, "rescale": True}]  # rescaled by the whole tensor's norm: merged whole


@pytest.mark.parametrize("hold", [0, 1 << 30])
@pytest.mark.parametrize("params", TIES)
def test_ties_in_row_blocks_equals_mergekits_whole_merge(params, hold, monkeypatch):
    """TIES merges large tensors in blocks after finding each task vector's cut over the whole tensor: in float32
    (no two |delta| equal at a cut here) the same bits as mergekit's whole-state-dict merge, whether the task
    vectors are read again for the merge (CPU) or kept from the cut pass (GPU with room)."""
    base, experts = _models()
    monkeypatch.setattr(pool, "BLOCK_BYTES", 16 * 4 * 7)
    monkeypatch.setattr(pool, "hold_bytes", lambda device: hold)
    got = pool.build(pool.Recipe("ties", "ties", params), experts, base)
    want = _whole("ties", params, base, experts)
    for k in want:
        assert torch.equal(got[k], want[k]), k


def test_magnitude_cut_keeps_exactly_k_and_ties_lowest_index_first():
    blocks = [torch.tensor([3.0, -1.0]), torch.tensor([2.0, -2.0]), torch.tensor([2.0, 0.0])]
    cut = pool.magnitude_cut(lambda: iter(blocks), 3)  # |delta| 3, 1, 2, 2, 2, 0: keep 3 and the first two 2s
    assert [bool(x) for b in blocks for x in cut.keep(b)] == [True, False, True, True, False, False]
    for dtype in (torch.bfloat16, torch.float32):
        g = torch.Generator().manual_seed(1)
        d = (torch.randn(5000, generator=g) * 4).round().to(dtype)  # integers: many equal magnitudes
        for k in (1, 777, 2500, 5000):
            parts = list(d.split(999))
            cut = pool.magnitude_cut(lambda: iter(parts), k)
            kept = torch.cat([cut.keep(p) for p in parts])
            assert int(kept.sum()) == k
            assert d.abs()[kept].min() >= d.abs()[~kept].max() if k < 5000 else True


def test_ties_in_bfloat16_blocks_differs_from_mergekit_only_where_magnitudes_tie_at_the_cut(monkeypatch):
    g = torch.Generator().manual_seed(0)
    base = {"w": torch.randn(600, 64, generator=g).to(torch.bfloat16)}
    experts = {f"e{i}": {"w": (base["w"].float() + 0.05 * torch.randn(600, 64, generator=g)).to(torch.bfloat16)}
               for i in range(3)}
    params = {"weight": 1.0, "density": 0.5}
    monkeypatch.setattr(pool, "BLOCK_BYTES", 64 * 2 * 50)
    got = pool.build(pool.Recipe("ties", "ties", params), experts, base)["w"]
    from mergekit.merge_methods import merge_state_dicts

    want = merge_state_dicts({pool.BASE: base, **experts}, "ties", base=pool.BASE, parameters=params,
                             out_dtype=torch.bfloat16)["w"]
    k = int(0.5 * got.numel())
    tied = torch.zeros(got.shape, dtype=torch.bool)
    for e in experts.values():
        a = (e["w"] - base["w"]).abs().float()
        tied |= a == a.flatten().sort(descending=True).values[k - 1]
    differ = got != want
    assert differ.any() and not (differ & ~tied).any()  # mergekit's argsort keeps another subset of the ties
