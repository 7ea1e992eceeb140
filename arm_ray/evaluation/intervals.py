"""95 % bootstrap intervals for the results table: each model's AVG and WS, and paired differences.

Tasks are resampled with replacement within each benchmark (a stratified
bootstrap: every benchmark keeps its number of tasks), `n_boot` times from a
fixed seed; an interval is the (alpha/2, 1 - alpha/2) percentiles of the
statistic over the resamples, beside the statistic on the tasks themselves.

    AVG(m) = mean over benchmarks b of mean reward of m on b's tasks
    WS(m)  = min over benchmarks b of the same means
    paired difference A - B: every resample draws the same task indices for
    both models, so each task's pair of rewards stays together.
The same seed gives the same indices to every model, so intervals are
comparable across rows and do not change from run to run. Trials of one task
(task ids `…#0`, `…#1`: τ²'s `trials`) are one unit, resampled together: the
task's value is their mean reward, so repeated trials never pass for more tasks.

A minimum of means is not a smooth statistic, and its percentile bootstrap under-covers when suites are close
(simulated, 4 tied suites x 40 tasks: 62 % for a nominal 95 %). So WS gets no percentile interval of its own:
- a model's WS interval is [min_b low_b, min_b high_b] from simultaneous intervals of the K suite means (Šidák:
  each at level (1 - alpha)^(1/K), the suites being resampled independently). When every suite mean lies in its
  interval, which happens with probability >= 1 - alpha, so does their minimum.
- a paired WS difference is the paired difference on one suite fixed before the test split is read
  (`worst`: the backbone's worst suite on dev), a plain mean the bootstrap covers. Where no suite is fixed, it is
  the range WS(a) - WS(b) spans when every suite mean of both models lies in its interval (Bonferroni over the
  2K means, which are paired): [min low_a - min high_b, min high_a - min low_b], conservative.
`tests/evaluation/test_interval_coverage.py` checks the coverage of both by simulation.
"""

from __future__ import annotations

import numpy as np

from arm_ray.world.base import task_of

STATS = ("AVG", "WS")


def per_task(rows: list[dict], split: str, model: str, benchmarks: list[str]) -> dict[str, np.ndarray]:
    """{benchmark: each task's reward (the mean over its trials), in task-id order} of one model on one split."""
    out = {}
    for b in benchmarks:
        picked = sorted((r["task_id"], r["reward"]) for r in rows
                        if r["model"] == model and r["split"] == split and r["benchmark"] == b)
        if not picked:
            raise ValueError(f"no {split} episode of {model} on {b}")
        ids = [t for t, _ in picked]
        if len(set(ids)) != len(ids):
            raise ValueError(f"{model} on {b}: a task id appears twice; pairing needs one episode per task")
        trials: dict[str, list[float]] = {}
        for t, reward in picked:
            trials.setdefault(task_of(t), []).append(reward)
        out[b] = np.array([np.mean(v) for _, v in sorted(trials.items())], dtype=np.float64)
    return out


def task_ids(rows: list[dict], split: str, model: str, benchmark: str) -> list[str]:
    return sorted(r["task_id"] for r in rows if r["model"] == model and r["split"] == split
                  and r["benchmark"] == benchmark)


def resample(counts: dict[str, int], n_boot: int, seed: int) -> dict[str, np.ndarray]:
    """Task indices [n_boot, n_b] per benchmark, drawn with replacement."""
    rng = np.random.default_rng(seed)
    return {b: rng.integers(0, n, size=(n_boot, n)) for b, n in counts.items()}


def _means(values: dict[str, np.ndarray], idx: dict[str, np.ndarray] | None) -> np.ndarray:
    """[n_boot, n_benchmarks] benchmark means over the resamples (or [1, n_benchmarks] on the tasks themselves)."""
    if idx is None:
        return np.array([[v.mean() for v in values.values()]])
    return np.stack([values[b][idx[b]].mean(axis=1) for b in values], axis=1)


def _fold(means: np.ndarray, benchmarks: list[str], groups: dict[str, list[str]] | None) -> np.ndarray:
    """[n, n_benchmarks] benchmark means -> [n, n_units] unit means (an aggregate: its members' mean)."""
    if groups is None:
        return means
    col = {b: i for i, b in enumerate(benchmarks)}
    return np.stack([means[:, [col[b] for b in bs]].mean(axis=1) for bs in groups.values()], axis=1)


def _interval(point: float, samples: np.ndarray, alpha: float) -> list[float]:
    lo, hi = np.percentile(samples, [100 * alpha / 2, 100 * (1 - alpha / 2)])
    return [float(point), float(lo), float(hi)]


def sidak(alpha: float, k: int) -> float:
    """The per-interval alpha that gives k independent intervals joint coverage 1 - alpha."""
    return 1 - (1 - alpha) ** (1 / k)


def _bounds(means: np.ndarray, alpha: float) -> tuple[np.ndarray, np.ndarray]:
    """Per-suite percentile bounds [n_benchmarks] of resampled means [n_boot, n_benchmarks] at level 1 - alpha."""
    lo, hi = np.percentile(means, [100 * alpha / 2, 100 * (1 - alpha / 2)], axis=0)
    return lo, hi


def ws_interval(point: np.ndarray, means: np.ndarray, alpha: float) -> list[float]:
    """WS = min of the suite means `point` [n_benchmarks], with the interval [min low, min high] of Šidák-
    simultaneous per-suite intervals from the resampled means [n_boot, n_benchmarks]."""
    lo, hi = _bounds(means, sidak(alpha, means.shape[1]))
    return [float(point.min()), float(lo.min()), float(hi.min())]


def ws_difference_bounds(pa: np.ndarray, pb: np.ndarray, ma: np.ndarray, mb: np.ndarray, alpha: float
                         ) -> list[float]:
    """WS(a) - WS(b) with the range it spans when all 2K suite means lie in their intervals (Bonferroni)."""
    level = alpha / (2 * ma.shape[1])
    lo_a, hi_a = _bounds(ma, level)
    lo_b, hi_b = _bounds(mb, level)
    return [float(pa.min() - pb.min()), float(lo_a.min() - hi_b.min()), float(hi_a.min() - lo_b.min())]


def model_intervals(rows: list[dict], models: list[str], benchmarks: list[str], split: str = "test",
                    n_boot: int = 2000, seed: int = 0, alpha: float = 0.05,
                    groups: dict[str, list[str]] | None = None) -> dict[str, dict[str, list[float]]]:
    """{model: {"AVG": [estimate, low, high], "WS": [...]}}; AVG and WS over the units `groups`
    (metrics.units: an aggregate counts once) when given, else over the benchmarks."""
    out = {}
    for m in models:
        values = per_task(rows, split, m, benchmarks)
        idx = resample({b: len(v) for b, v in values.items()}, n_boot, seed)
        point, means = _fold(_means(values, None), benchmarks, groups), _fold(_means(values, idx), benchmarks, groups)
        out[m] = {"AVG": _interval(point.mean(), means.mean(axis=1), alpha),
                  "WS": ws_interval(point[0], means, alpha)}
    return out


def paired_difference(rows: list[dict], a: str, b: str, benchmarks: list[str], split: str = "test",
                      n_boot: int = 2000, seed: int = 0, alpha: float = 0.05, worst: str | None = None,
                      groups: dict[str, list[str]] | None = None) -> dict[str, list[float]]:
    """score(a) - score(b) on the same tasks: {benchmark or aggregate: [estimate, low, high], "AVG": ...,
    "WS": ..., "WS_suite": the unit WS's difference is taken on, or None}. With `groups` (metrics.units) AVG and
    WS run over units, an aggregate counting once, and each aggregate gets its own entry.

    WS: the difference on `worst`, a suite fixed before this split was read (the backbone's worst on dev; see
    `worst_suite`), or with one benchmark on that one; otherwise WS(a) - WS(b) with conservative bounds (the
    worst suite may differ between the two models). See the module's note.
    """
    for bench in benchmarks:
        if task_ids(rows, split, a, bench) != task_ids(rows, split, b, bench):
            raise ValueError(f"{a} and {b} were not run on the same {split} tasks of {bench}; cannot pair them")
    names = list(groups) if groups is not None else list(benchmarks)
    if worst is not None and worst not in names:
        raise ValueError(f"the fixed worst suite {worst!r} is not one of {names}")
    va, vb = per_task(rows, split, a, benchmarks), per_task(rows, split, b, benchmarks)
    idx = resample({bench: len(v) for bench, v in va.items()}, n_boot, seed)
    ma, mb = _means(va, idx), _means(vb, idx)
    pa, pb = _means(va, None), _means(vb, None)
    out = {bench: _interval(pa[0, i] - pb[0, i], ma[:, i] - mb[:, i], alpha) for i, bench in enumerate(benchmarks)}
    ma, mb, pa, pb = (_fold(x, benchmarks, groups) for x in (ma, mb, pa, pb))
    out.update({u: _interval(pa[0, i] - pb[0, i], ma[:, i] - mb[:, i], alpha)
                for i, u in enumerate(names) if u not in out})
    out["AVG"] = _interval(pa.mean() - pb.mean(), ma.mean(axis=1) - mb.mean(axis=1), alpha)
    if worst is None and len(names) == 1:
        worst = names[0]
    out["WS"] = list(out[worst]) if worst is not None else ws_difference_bounds(pa[0], pb[0], ma, mb, alpha)
    out["WS_suite"] = worst
    return out


def worst_suite(rows: list[dict], model: str, benchmarks: list[str], split: str = "dev",
                groups: dict[str, list[str]] | None = None) -> str | None:
    """The suite (or unit of `groups`) where `model` scores lowest on `split` (the first on a tie), or None when
    the split lacks one of the benchmarks: the WS suite fixed before the test split is read."""
    if not benchmarks or any(not task_ids(rows, split, model, b) for b in benchmarks):
        return None
    means = {b: v.mean() for b, v in per_task(rows, split, model, benchmarks).items()}
    unit = {u: np.mean([means[b] for b in bs]) for u, bs in (groups or {b: [b] for b in benchmarks}).items()}
    return min(unit, key=lambda u: unit[u])
