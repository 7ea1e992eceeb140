"""Conflict-aware neuron transplantation (ARM Eq. 6-8) and the weight edit it implies.

Sets are boolean masks [L, d_ff] as in `selection`. The functions here decide
WHAT moves; `checkpoints.transplant_checkpoint` streams the files and calls
`apply_edit` on each tensor. Pure numpy/torch.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Mapping, Sequence

import numpy as np
import torch

from arm_ray.architectures import MlpNames

SKIP, LARGER_GAP = "skip", "larger_gap"
CONFLICT_POLICIES = (SKIP, LARGER_GAP)


def protection_sets(backbone_sets: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """P_{-b} = union over b' != b of S(M0; b'), over every benchmark, weak or not (Eq. 7)."""
    out = {}
    for b, s in backbone_sets.items():
        p = np.zeros_like(s)
        for other, s2 in backbone_sets.items():
            if other != b:
                p |= s2
        out[b] = p
    return out


def transplant_sets(donor_sets: Mapping[str, np.ndarray], weak: Sequence[str],
                    protection: Mapping[str, np.ndarray] | None) -> dict[str, np.ndarray]:
    """T_b = S(M_b; b) minus P_{-b} for each weak b (Eq. 8); `protection=None` is the unprotected ablation."""
    return {b: donor_sets[b] & ~protection[b] if protection is not None else donor_sets[b].copy() for b in weak}


def resolve_conflicts(tsets: Mapping[str, np.ndarray], donors: Mapping[str, str],
                      gaps: Mapping[str, float | None], policy: str = SKIP
                      ) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Neurons wanted by weak benchmarks whose donors differ are conflicts.

    `skip`: nobody gets them. `larger_gap`: the benchmark with the strictly
    largest gap gets them (and any benchmark sharing its donor); equal or
    unknown gaps fall back to `skip`. Returns (final sets, conflict mask).
    """
    if policy not in CONFLICT_POLICIES:
        raise ValueError(f"conflict policy {policy!r}: expected one of {CONFLICT_POLICIES}")
    names = list(tsets)
    final = {b: tsets[b].copy() for b in names}
    if not names:
        return final, np.zeros((0, 0), dtype=bool)
    conflicts = np.zeros_like(tsets[names[0]])
    for i, a in enumerate(names):
        for b in names[i + 1:]:
            if donors[a] != donors[b]:
                conflicts |= tsets[a] & tsets[b]
    for layer, j in zip(*np.nonzero(conflicts)):
        wanting = [b for b in names if tsets[b][layer, j]]
        winner_donor = None
        if policy == LARGER_GAP and all(gaps.get(b) is not None for b in wanting):
            top = max(gaps[b] for b in wanting)
            leaders = {donors[b] for b in wanting if gaps[b] == top}
            if len(leaders) == 1:
                winner_donor = leaders.pop()
        for b in wanting:
            if donors[b] != winner_donor:
                final[b][layer, j] = False
    return final, conflicts


def neurons_by_donor(final: Mapping[str, np.ndarray], donors: Mapping[str, str]) -> dict[str, np.ndarray]:
    """Union of the final sets of the benchmarks each donor serves: the neurons it gives."""
    out: dict[str, np.ndarray] = {}
    for b, s in final.items():
        d = donors[b]
        out[d] = out[d] | s if d in out else s.copy()
    return out


def mask_to_pairs(mask: np.ndarray) -> list[list[int]]:
    return [[int(layer), int(j)] for layer, j in zip(*np.nonzero(mask))]


@dataclass(frozen=True)
class TensorEdit:
    """Copy entries `index` along `axis` of tensor `name` from the donor (Eq. 6)."""

    name: str
    axis: int
    index: np.ndarray  # sorted int64


def neuron_edits(mask: np.ndarray, names: MlpNames, tensor_names: set[str]) -> list[TensorEdit]:
    """The tensor edits that move the neurons in `mask` [L, d_ff]: W_in rows, b_in entries, W_out columns."""
    d_ff = mask.shape[1]
    edits = []
    for layer in range(mask.shape[0]):
        j = np.flatnonzero(mask[layer]).astype(np.int64)
        if j.size == 0:
            continue
        rows = []
        if names.gate_up:
            rows.append((names.gate_up.format(l=layer), np.concatenate([j, j + d_ff])))
        else:
            rows += [(names.gate.format(l=layer), j), (names.up.format(l=layer), j)]
        for prefix, idx in rows:
            edits.append(TensorEdit(prefix + ".weight", 0, idx))
            if prefix + ".bias" in tensor_names:
                edits.append(TensorEdit(prefix + ".bias", 0, idx))
        edits.append(TensorEdit(names.down.format(l=layer) + ".weight", 1, j))
    return edits


def apply_edit(target: torch.Tensor, donor_values: torch.Tensor, edit: TensorEdit) -> torch.Tensor:
    """target[..., index, ...] = donor_values along edit.axis; returns the edited tensor (in place)."""
    idx = torch.from_numpy(edit.index)
    expected = list(target.shape)
    expected[edit.axis] = len(edit.index)
    if list(donor_values.shape) != expected:
        raise ValueError(f"{edit.name}: donor slice has shape {list(donor_values.shape)}, expected {expected}")
    return target.index_copy_(edit.axis, idx, donor_values.to(target.dtype))


def per_layer_counts(mask: np.ndarray) -> list[int]:
    return [int(c) for c in mask.sum(axis=1)]


def gap_or_none(value: float | None) -> float | None:
    return None if value is None or (isinstance(value, float) and math.isnan(value)) else float(value)
