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


def _stats(means: np.ndarray) -> dict[str, np.ndarray]:
    return {"AVG": means.mean(axis=1), "WS": means.min(axis=1)}


def _interval(point: float, samples: np.ndarray, alpha: float) -> list[float]:
    lo, hi = np.percentile(samples, [100 * alpha / 2, 100 * (1 - alpha / 2)])
    return [float(point), float(lo), float(hi)]


def model_intervals(rows: list[dict], models: list[str], benchmarks: list[str], split: str = "test",
                    n_boot: int = 2000, seed: int = 0, alpha: float = 0.05) -> dict[str, dict[str, list[float]]]:
    """{model: {"AVG": [estimate, low, high], "WS": [...]}}."""
    out = {}
    for m in models:
        values = per_task(rows, split, m, benchmarks)
        idx = resample({b: len(v) for b, v in values.items()}, n_boot, seed)
        point, boot = _stats(_means(values, None)), _stats(_means(values, idx))
        out[m] = {s: _interval(point[s][0], boot[s], alpha) for s in STATS}
    return out


def paired_difference(rows: list[dict], a: str, b: str, benchmarks: list[str], split: str = "test",
                      n_boot: int = 2000, seed: int = 0, alpha: float = 0.05) -> dict[str, list[float]]:
    """score(a) - score(b) on the same tasks: {benchmark: [estimate, low, high], "AVG": ..., "WS": ...}.

    WS's difference is WS(a) - WS(b) on each resample (the worst suite may differ between the two models).
    """
    for bench in benchmarks:
        if task_ids(rows, split, a, bench) != task_ids(rows, split, b, bench):
            raise ValueError(f"{a} and {b} were not run on the same {split} tasks of {bench}; cannot pair them")
    va, vb = per_task(rows, split, a, benchmarks), per_task(rows, split, b, benchmarks)
    idx = resample({bench: len(v) for bench, v in va.items()}, n_boot, seed)
    ma, mb = _means(va, idx), _means(vb, idx)
    pa, pb = _means(va, None), _means(vb, None)
    out = {bench: _interval(pa[0, i] - pb[0, i], ma[:, i] - mb[:, i], alpha) for i, bench in enumerate(benchmarks)}
    sa, sb, qa, qb = _stats(ma), _stats(mb), _stats(pa), _stats(pb)
    out.update({s: _interval(qa[s][0] - qb[s][0], sa[s] - sb[s], alpha) for s in STATS})
    return out
