"""Top-k salient sets, Activation-Overlap Score and backbone selection (ARM Eq. 3-5).

A salient set S(M; b, r) is a boolean mask [L, d_ff]: entry (l, j) is True when
neuron j is among the ceil(k * d_ff) largest s_{l,j} of layer l. Pure numpy.
"""

from __future__ import annotations

import math
from typing import Mapping, Sequence

import numpy as np


def topk_count(k: float, d_ff: int) -> int:
    """ceil(k * d_ff), robust to float noise (0.1 * 30 is 3.0000000000000004 in binary)."""
    if not 0 < k <= 1:
        raise ValueError(f"k must lie in (0, 1], got {k}")
    return max(1, math.ceil(round(k * d_ff, 9)))


def topk_layer(s: np.ndarray, k: float) -> np.ndarray:
    """Indices of the ceil(k*d_ff) largest entries of s_l; ties go to the lower index (Eq. 3)."""
    s = np.asarray(s, dtype=np.float64)
    if not np.isfinite(s).all():
        raise ValueError("saliency holds NaN or inf; the traced model is not finite")
    order = np.argsort(-s, kind="stable")  # stable: equal values keep index order
    return np.sort(order[: topk_count(k, s.shape[-1])])


def salient_set(s: np.ndarray, k: float) -> np.ndarray:
    """S(M; b, r) as a mask [L, d_ff] from the saliency s [L, d_ff]."""
    s = np.asarray(s)
    mask = np.zeros(s.shape, dtype=bool)
    for layer in range(s.shape[0]):
        mask[layer, topk_layer(s[layer], k)] = True
    return mask


def jaccard(a: np.ndarray, b: np.ndarray) -> float:
    union = np.logical_or(a, b).sum()
    if union == 0:
        return 1.0
    return float(np.logical_and(a, b).sum() / union)


def aos_table(candidate_sets: Mapping[str, Mapping[str, np.ndarray]],
              expert_sets: Mapping[str, np.ndarray]) -> dict[str, dict[str, float]]:
    """AOS(g; b) = |S_b^(g) ∩ S_b^exp| / |S_b^(g) ∪ S_b^exp| for every candidate g and benchmark b (Eq. 4)."""
    return {g: {b: jaccard(sets[b], expert_sets[b]) for b in expert_sets} for g, sets in candidate_sets.items()}


def mean_aos(aos: Mapping[str, float], groups: Mapping[str, Sequence[str]] | None = None) -> float:
    """Mean AOS over benchmarks, or over the reported units `groups` ({unit: its benchmarks}: benchmarks joined in
    one aggregate, such as τ-bench's retail and airline, count once, as their mean)."""
    if groups is None:
        return float(sum(aos.values()) / len(aos))
    per_unit = [sum(aos[b] for b in bs) / len(bs) for bs in groups.values() if bs]
    return float(sum(per_unit) / len(per_unit))


def select(aos: Mapping[str, Mapping[str, float]], order: Sequence[str],
           groups: Mapping[str, Sequence[str]] | None = None) -> str:
    """argmax_g of the mean AOS over benchmarks (Eq. 5), or over `groups`' units; a tie goes to the operator
    listed first."""
    best, best_score = None, -math.inf
    for g in order:
        score = mean_aos(aos[g], groups)
        if score > best_score:  # strict: an equal score later in the list never wins
            best, best_score = g, score
    if best is None:
        raise ValueError("no candidate to select from")
    return best
