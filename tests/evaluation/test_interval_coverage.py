"""Coverage of the WS intervals by simulation: nominal 95 % must cover at least 93 % where a percentile
bootstrap of the minimum does not (tied suites), and the paired WS verdict must not call a zero difference.

Each case draws Bernoulli rewards with known success rates, builds the interval exactly as
`model_intervals` / `paired_difference` do (the same helpers) and counts how often it holds the truth.
"""

import numpy as np
import pytest

from arm_ray.evaluation import intervals

REPS, N_BOOT, ALPHA = 600, 1000, 0.05


def draw(rng, rates, n):
    return {f"s{i}": rng.binomial(1, p, n).astype(np.float64) for i, p in enumerate(rates)}


def model_ws(rates, n, seed=0):
    """(coverage of the shipped WS interval, coverage of the naive percentile bootstrap of the min)."""
    rng, hit, naive = np.random.default_rng(seed), 0, 0
    truth = min(rates)
    for r in range(REPS):
        values = draw(rng, rates, n)
        idx = intervals.resample({b: n for b in values}, N_BOOT, r)
        point, means = intervals._means(values, None)[0], intervals._means(values, idx)
        _, lo, hi = intervals.ws_interval(point, means, ALPHA)
        hit += lo <= truth <= hi
        nlo, nhi = np.percentile(means.min(axis=1), [2.5, 97.5])
        naive += nlo <= truth <= nhi
    return hit / REPS, naive / REPS


@pytest.mark.parametrize("rates,n", [([0.5] * 4, 40), ([0.2] * 4, 40), ([0.5] * 2, 50), ([0.3, 0.7], 50)])
def test_model_ws_interval_covers(rates, n):
    covered, naive = model_ws(rates, n)
    assert covered >= 0.93, (covered, naive)
    if len(set(rates)) == 1 and len(rates) == 4:  # the case the old interval failed: the simulation sees it
        assert naive < 0.8, naive


def paired(rates_a, rates_b, n, seed=1):
    """Per replication: the fixed-suite interval (suite = b's true worst, as dev would pick it), and the
    bounds without a fixed suite; their coverage of their own truths and how often each says 'lowers'."""
    rng = np.random.default_rng(seed)
    w = int(np.argmin(rates_b))
    fixed_truth, ws_truth = rates_a[w] - rates_b[w], min(rates_a) - min(rates_b)
    fixed = bounds = fixed_lowers = bounds_lowers = 0
    for r in range(REPS):
        va, vb = draw(rng, rates_a, n), draw(rng, rates_b, n)
        idx = intervals.resample({b: n for b in va}, N_BOOT, r)
        pa, pb = intervals._means(va, None), intervals._means(vb, None)
        ma, mb = intervals._means(va, idx), intervals._means(vb, idx)
        d = intervals._interval(pa[0, w] - pb[0, w], ma[:, w] - mb[:, w], ALPHA)
        fixed += d[1] <= fixed_truth <= d[2]
        fixed_lowers += d[2] < 0
        e = intervals.ws_difference_bounds(pa[0], pb[0], ma, mb, ALPHA)
        bounds += e[1] <= ws_truth <= e[2]
        bounds_lowers += e[2] < 0
    return fixed / REPS, bounds / REPS, fixed_lowers / REPS, bounds_lowers / REPS


def test_paired_ws_covers_a_raised_worst_suite():
    # ARM at 0.45 on four suites, its backbone 0.30 on one of them: the true WS difference is +0.15
    fixed, bounds, _, _ = paired([0.45] * 4, [0.30, 0.45, 0.45, 0.45], 40)
    assert fixed >= 0.93 and bounds >= 0.93, (fixed, bounds)


def test_paired_ws_does_not_call_a_zero_difference():
    fixed, bounds, fixed_lowers, bounds_lowers = paired([0.45] * 4, [0.45] * 4, 40)
    assert fixed >= 0.93 and bounds >= 0.93
    assert fixed_lowers <= 0.04 and bounds_lowers <= 0.04, (fixed_lowers, bounds_lowers)


def rows(model, bench, rewards, split="test"):
    return [{"model": model, "benchmark": bench, "split": split, "task_id": f"{bench}-{i}", "reward": r}
            for i, r in enumerate(rewards)]


def test_paired_difference_takes_ws_on_the_fixed_suite():
    data = (rows("arm", "a", [1.0, 1.0, 0.0, 1.0]) + rows("bb", "a", [0.0, 1.0, 0.0, 0.0])
            + rows("arm", "b", [1.0, 0.0, 0.0, 0.0]) + rows("bb", "b", [1.0, 0.0, 0.0, 0.0]))
    d = intervals.paired_difference(data, "arm", "bb", ["a", "b"], n_boot=2000, worst="a")
    assert d["WS"] == d["a"] and d["WS_suite"] == "a"
    # without a fixed suite: WS(arm) - WS(bb) = 0.25 - 0.25 as the point, conservative bounds around it
    free = intervals.paired_difference(data, "arm", "bb", ["a", "b"], n_boot=2000)
    assert free["WS_suite"] is None and free["WS"][0] == pytest.approx(0.0)
    assert free["WS"][1] <= 0.0 <= free["WS"][2]
    with pytest.raises(ValueError, match="fixed worst suite 'c'"):
        intervals.paired_difference(data, "arm", "bb", ["a", "b"], worst="c")


def test_worst_suite_is_read_on_dev():
    data = rows("bb", "a", [1.0, 0.0], "dev") + rows("bb", "b", [0.0, 0.0], "dev") + rows("bb", "c", [0.0], "test")
    assert intervals.worst_suite(data, "bb", ["a", "b"]) == "b"
    assert intervals.worst_suite(data, "bb", ["a", "b", "c"]) is None  # c has no dev episode: nothing fixed
