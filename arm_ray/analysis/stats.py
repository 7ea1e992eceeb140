"""The statistics of `arm_ray.analysis_pipeline`, pure numpy: correlations with bootstrap intervals, set overlaps.

    pearson(x, y)  = cov(x, y) / (sd(x) sd(y))
    spearman(x, y) = pearson(rank(x), rank(y)), tied values sharing their mean rank
    jaccard(A, B)  = |A ∩ B| / |A ∪ B|  (AOS's overlap, Eq. 4)
    shared(A_b)    = |A_b ∩ union of the other sets| / |A_b|: the share of a benchmark's salient neurons that
                     another benchmark's set holds too
    overlap rate   = |{n : n lies in >= 2 of the sets}| / |union of the sets|: the share of all salient neurons
                     that more than one set holds. The paper's "overlap rate" (61 % -> 41 %, Sec. 5) gives no
                     formula; this is our reading of "neurons shared across benchmark-specific sets". Three sets of
                     10 where each pair shares 5 different neurons: overlap rate 100 %, mean pairwise Jaccard 33 %.

An interval is the (alpha/2, 1 - alpha/2) percentiles over `n_boot` resamples drawn from a fixed seed, beside the
statistic on the data themselves. A correlation's resamples draw the points (candidates) with replacement and,
when each point's y is itself an estimate, the y of every point under the same resample of its tasks.
Resamples where a correlation is undefined (every x or every y equal) are left out and counted.
"""

from __future__ import annotations

from typing import Mapping

import numpy as np


def ranks(x: np.ndarray) -> np.ndarray:
    """1-based ranks; tied values share the mean of the ranks they span."""
    x = np.asarray(x, dtype=np.float64)
    order = np.argsort(x, kind="stable")
    r = np.empty(len(x), dtype=np.float64)
    r[order] = np.arange(1, len(x) + 1)
    for v in np.unique(x):
        tied = x == v
        if tied.sum() > 1:
            r[tied] = r[tied].mean()
    return r


def pearson(x: np.ndarray, y: np.ndarray) -> float:
    """Pearson's r; nan when x or y is constant (no correlation is defined)."""
    x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    dx, dy = x - x.mean(), y - y.mean()
    den = np.sqrt((dx * dx).sum() * (dy * dy).sum())
    return float((dx * dy).sum() / den) if den > 0 else float("nan")


def spearman(x: np.ndarray, y: np.ndarray) -> float:
    return pearson(ranks(x), ranks(y))


def percentile_interval(point: float, samples: np.ndarray, alpha: float = 0.05) -> list[float]:
    """[point, low, high]; low and high are nan when no resample gave a value."""
    samples = np.asarray(samples, dtype=np.float64)
    samples = samples[np.isfinite(samples)]
    if samples.size == 0:
        return [float(point), float("nan"), float("nan")]
    lo, hi = np.percentile(samples, [100 * alpha / 2, 100 * (1 - alpha / 2)])
    return [float(point), float(lo), float(hi)]


def correlations(x: np.ndarray, y: np.ndarray, y_resampled: np.ndarray | None = None, n_boot: int = 2000,
                 seed: int = 0, alpha: float = 0.05) -> dict:
    """Pearson and Spearman of (x, y) with bootstrap intervals over the points.

    `y_resampled` [n_boot, n]: each point's y under resample i of its own data (the task bootstrap), used in
    resample i beside the drawn points; without it y is taken as exact. Returns {"pearson": [r, lo, hi],
    "spearman": [...], "n_points", "n_boot", "n_valid": {"pearson": m, "spearman": m}} (resamples where the
    correlation was defined).
    """
    x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    n = len(x)
    if n < 3:
        raise ValueError(f"a correlation with an interval needs at least 3 points, got {n}")
    rng = np.random.default_rng(seed)
    pick = rng.integers(0, n, size=(n_boot, n))
    out: dict = {"n_points": n, "n_boot": n_boot, "n_valid": {}}
    for name, f in (("pearson", pearson), ("spearman", spearman)):
        samples = np.array([f(x[p], (y if y_resampled is None else y_resampled[i])[p]) for i, p in enumerate(pick)])
        out[name] = percentile_interval(f(x, y), samples, alpha)
        out["n_valid"][name] = int(np.isfinite(samples).sum())
    return out


def jaccard(a: np.ndarray, b: np.ndarray) -> float:
    union = np.logical_or(a, b).sum()
    return float(np.logical_and(a, b).sum() / union) if union else 1.0


def jaccard_per_layer(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """[L] Jaccard of each layer's row of two masks [L, d_ff]."""
    return np.array([jaccard(a[layer], b[layer]) for layer in range(a.shape[0])])


def overlap_rate(sets: Mapping[str, np.ndarray], axis=None) -> float | np.ndarray:
    """Share of the union of `sets` (masks [L, d_ff]) held by at least two of them; per layer with axis=1."""
    count = np.sum([np.asarray(m, dtype=np.int64) for m in sets.values()], axis=0)
    union, multi = (count > 0).sum(axis=axis), (count > 1).sum(axis=axis)
    return multi / np.maximum(1, union) if axis is not None else float(multi / union) if union else 0.0


def pairwise_overlap(sets: Mapping[str, np.ndarray]) -> dict:
    """Cross-benchmark overlap of salient sets {benchmark: mask [L, d_ff]}.

    "overlap_rate" (see the module's note) and "overlap_rate_per_layer": [L], "jaccard": mean over benchmark pairs
    of the Jaccard of the whole sets, "jaccard_per_layer": [L] the same per layer, "pairs": {"a|b": Jaccard},
    "shared": mean over benchmarks of shared(A_b), "shared_per_layer": [L], "n_pairs", "n_sets", "set_size"
    (neurons in the first set), "set_sizes".
    """
    names = list(sets)
    if len(names) < 2:
        raise ValueError("cross-benchmark overlap needs at least two benchmarks")
    pairs = [(a, b) for i, a in enumerate(names) for b in names[i + 1:]]
    per_pair = {f"{a}|{b}": jaccard(sets[a], sets[b]) for a, b in pairs}
    per_layer = np.mean([jaccard_per_layer(sets[a], sets[b]) for a, b in pairs], axis=0)
    shared, shared_layer = [], []
    for b in names:
        others = np.logical_or.reduce([sets[o] for o in names if o != b])
        both = sets[b] & others
        shared.append(both.sum() / max(1, sets[b].sum()))
        shared_layer.append(both.sum(axis=1) / np.maximum(1, sets[b].sum(axis=1)))
    return {"overlap_rate": overlap_rate(sets), "overlap_rate_per_layer": overlap_rate(sets, axis=1).tolist(),
            "jaccard": float(np.mean(list(per_pair.values()))), "jaccard_per_layer": per_layer.tolist(),
            "pairs": per_pair, "shared": float(np.mean(shared)),
            "shared_per_layer": np.mean(shared_layer, axis=0).tolist(), "n_pairs": len(pairs), "n_sets": len(names),
            "set_size": int(sets[names[0]].sum()), "set_sizes": {b: int(sets[b].sum()) for b in names}}
