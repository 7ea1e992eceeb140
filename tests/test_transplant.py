"""Eq. 6-8: protection, set difference, conflicts under both policies, row/column copies."""

import numpy as np
import pytest
import torch

from arm_ray import transplant
from arm_ray.architectures import FUSED, GATED


def m(*rows):
    return np.array(rows, dtype=bool)


def test_protection_is_union_of_other_benchmarks():
    s = {"a": m([1, 0, 0, 0]), "b": m([0, 1, 0, 0]), "c": m([0, 1, 1, 0])}
    p = transplant.protection_sets(s)
    assert p["a"].tolist() == [[False, True, True, False]]
    assert p["b"].tolist() == [[True, True, True, False]]
    assert p["c"].tolist() == [[True, True, False, False]]


def test_transplant_set_is_donor_minus_protection():
    donor = {"a": m([1, 1, 1, 0]), "b": m([0, 0, 1, 1])}
    prot = {"a": m([0, 1, 0, 0]), "b": m([0, 0, 0, 0])}
    t = transplant.transplant_sets(donor, ["a"], prot)
    assert list(t) == ["a"] and t["a"].tolist() == [[True, False, True, False]]
    unprotected = transplant.transplant_sets(donor, ["a"], None)
    assert unprotected["a"].tolist() == [[True, True, True, False]]


def test_conflicts_skip_and_larger_gap():
    t = {"a": m([1, 1, 0, 0]), "b": m([0, 1, 1, 0]), "c": m([0, 1, 0, 1])}
    donors = {"a": "E1", "b": "E2", "c": "E2"}
    gaps = {"a": 0.1, "b": 0.3, "c": 0.2}
    final, conflicts = transplant.resolve_conflicts(t, donors, gaps, "skip")
    assert conflicts.tolist() == [[False, True, False, False]]
    assert [final[b].tolist() for b in "abc"] == [[[True, False, False, False]], [[False, False, True, False]],
                                                  [[False, False, False, True]]]
    final, _ = transplant.resolve_conflicts(t, donors, gaps, "larger_gap")
    # b has the largest gap; c shares b's donor, so it keeps the neuron too (same values)
    assert final["a"][0, 1] == False and final["b"][0, 1] == True and final["c"][0, 1] == True  # noqa: E712
    final, _ = transplant.resolve_conflicts(t, donors, {"a": None, "b": 0.3, "c": 0.2}, "larger_gap")
    assert not any(final[b][0, 1] for b in "abc")  # unknown gap: fall back to skip


def test_same_donor_is_no_conflict():
    t = {"a": m([1, 1]), "b": m([0, 1])}
    final, conflicts = transplant.resolve_conflicts(t, {"a": "E", "b": "E"}, {}, "skip")
    assert not conflicts.any() and final["b"][0, 1]
    by_donor = transplant.neurons_by_donor(final, {"a": "E", "b": "E"})
    assert by_donor["E"].tolist() == [[True, True]]


def test_unknown_policy():
    with pytest.raises(ValueError):
        transplant.resolve_conflicts({"a": m([1])}, {"a": "E"}, {}, "random")


def _apply(edits, target, donor):
    for e in edits:
        transplant.apply_edit(target[e.name], donor[e.name].index_select(e.axis, torch.from_numpy(e.index)), e)


def test_row_and_column_copies_separate_gate_up():
    d_ff, d = 4, 3
    mask = np.zeros((1, d_ff), bool)
    mask[0, [1, 3]] = True
    names = {f"model.layers.0.mlp.{p}.weight" for p in ("gate_proj", "up_proj", "down_proj")}
    names.add("model.layers.0.mlp.up_proj.bias")
    edits = transplant.neuron_edits(mask, GATED, names)
    target = {"model.layers.0.mlp.gate_proj.weight": torch.zeros(d_ff, d),
              "model.layers.0.mlp.up_proj.weight": torch.zeros(d_ff, d),
              "model.layers.0.mlp.up_proj.bias": torch.zeros(d_ff),
              "model.layers.0.mlp.down_proj.weight": torch.zeros(d, d_ff)}
    donor = {k: torch.arange(v.numel(), dtype=torch.float32).reshape(v.shape) + 1 for k, v in target.items()}
    _apply(edits, target, donor)
    g = target["model.layers.0.mlp.gate_proj.weight"]
    assert torch.equal(g[[1, 3]], donor["model.layers.0.mlp.gate_proj.weight"][[1, 3]]) and g[[0, 2]].eq(0).all()
    assert target["model.layers.0.mlp.up_proj.bias"].tolist() == [0, 2, 0, 4]
    dn = target["model.layers.0.mlp.down_proj.weight"]
    assert torch.equal(dn[:, [1, 3]], donor["model.layers.0.mlp.down_proj.weight"][:, [1, 3]])
    assert dn[:, [0, 2]].eq(0).all()


def test_fused_gate_up_copies_rows_j_and_dff_plus_j():
    d_ff, d = 4, 2
    mask = np.zeros((1, d_ff), bool)
    mask[0, 2] = True
    names = {"model.layers.0.mlp.gate_up_proj.weight", "model.layers.0.mlp.down_proj.weight"}
    edits = transplant.neuron_edits(mask, FUSED, names)
    target = {"model.layers.0.mlp.gate_up_proj.weight": torch.zeros(2 * d_ff, d),
              "model.layers.0.mlp.down_proj.weight": torch.zeros(d, d_ff)}
    donor = {k: torch.ones_like(v) for k, v in target.items()}
    _apply(edits, target, donor)
    rows = target["model.layers.0.mlp.gate_up_proj.weight"].sum(1)
    assert rows.nonzero().flatten().tolist() == [2, 6]
    assert target["model.layers.0.mlp.down_proj.weight"].sum(0).nonzero().flatten().tolist() == [2]


def test_apply_edit_checks_shape():
    e = transplant.TensorEdit("w", 0, np.array([0, 1]))
    with pytest.raises(ValueError, match="expected"):
        transplant.apply_edit(torch.zeros(4, 2), torch.zeros(3, 2), e)
