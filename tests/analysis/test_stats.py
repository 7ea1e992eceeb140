"""The analysis statistics on small inputs worked out by hand."""

import math

import numpy as np
import pytest

from arm_ray.analysis import stats


def test_ranks_share_the_mean_rank_of_ties():
    assert stats.ranks([10, 20, 20, 30]).tolist() == [1, 2.5, 2.5, 4]
    assert stats.ranks([3, 1, 2]).tolist() == [3, 1, 2]


def test_pearson_and_spearman_by_hand():
    # x mean 2, y mean 13/3: sum dx*dy = 5, sum dx^2 = 2, sum dy^2 = 114/9
    assert stats.pearson([1, 2, 3], [2, 4, 7]) == pytest.approx(5 / math.sqrt(2 * 114 / 9))
    # one swapped pair of four: 1 - 6 * 2 / (4 * 15)
    assert stats.spearman([1, 2, 3, 4], [1, 3, 2, 4]) == pytest.approx(0.8)
    assert stats.spearman([1, 2, 3], [10, 100, 1000]) == pytest.approx(1.0)  # monotone, not linear
    assert math.isnan(stats.pearson([1, 1, 1], [1, 2, 3]))  # undefined, not 0


def test_correlation_bootstrap_on_a_fixed_seed():
    # seed 1 draws points [1, 2, 3, 3]: x = [2, 3, 4, 4], y = [3, 2, 4, 4]
    assert np.random.default_rng(1).integers(0, 4, size=(1, 4)).tolist() == [[1, 2, 3, 3]]
    c = stats.correlations(np.array([1, 2, 3, 4]), np.array([1, 3, 2, 4]), n_boot=1, seed=1)
    assert c["pearson"] == pytest.approx([0.8, 1.75 / 2.75, 1.75 / 2.75])  # sum dx dy 1.75, sum dx^2 2.75
    assert c["spearman"] == pytest.approx([0.8, 3.5 / 4.5, 3.5 / 4.5])  # ranks [1,2,3.5,3.5] vs [2,1,3.5,3.5]
    assert c["n_points"] == 4 and c["n_valid"] == {"pearson": 1, "spearman": 1}


def test_correlation_bootstrap_uses_each_resamples_y_and_drops_undefined_ones():
    x = np.array([1.0, 2.0, 3.0])
    # resample 0 of y reverses the order: that resample's r is -1 wherever it is defined
    y_res = np.array([[3.0, 2.0, 1.0]] * 50)
    c = stats.correlations(x, x, y_res, n_boot=50, seed=0)
    assert c["pearson"][0] == pytest.approx(1.0) and c["pearson"][1:] == pytest.approx([-1.0, -1.0])
    pick = np.random.default_rng(0).integers(0, 3, size=(50, 3))
    defined = sum(len(set(p)) > 1 for p in pick.tolist())
    assert c["n_valid"]["pearson"] == defined < 50  # draws of one point repeated have no correlation
    again = stats.correlations(x, x, y_res, n_boot=50, seed=0)
    assert again == c
    with pytest.raises(ValueError, match="at least 3 points"):
        stats.correlations(x[:2], x[:2])


def test_percentile_interval():
    assert stats.percentile_interval(50.0, np.arange(101)) == pytest.approx([50.0, 2.5, 97.5])
    lo_hi = stats.percentile_interval(0.5, np.array([np.nan, np.nan]))[1:]
    assert all(math.isnan(v) for v in lo_hi)


def test_pairwise_overlap_by_hand():
    a = np.array([[1, 1, 0, 0], [1, 0, 1, 0]], bool)
    b = np.array([[1, 0, 1, 0], [1, 0, 1, 0]], bool)
    c = np.array([[0, 0, 1, 1], [0, 1, 0, 1]], bool)
    o = stats.pairwise_overlap({"a": a, "b": b, "c": c})
    # whole sets: a|b 3 shared of 5, a|c 0 of 8, b|c 1 of 7
    assert o["pairs"] == pytest.approx({"a|b": 3 / 5, "a|c": 0.0, "b|c": 1 / 7})
    assert o["jaccard"] == pytest.approx((3 / 5 + 0 + 1 / 7) / 3)
    # layer 0: a|b 1/3, a|c 0, b|c 1/3; layer 1: a|b 1, a|c 0, b|c 0
    assert o["jaccard_per_layer"] == pytest.approx([2 / 9, 1 / 3])
    # shared: a has 3 of 4 in b or c; b 4 of 4 (a or c); c 1 of 4
    assert o["shared"] == pytest.approx((3 / 4 + 1 + 1 / 4) / 3)
    assert o["n_pairs"] == 3 and o["set_size"] == 4
    # overlap rate: of the 8 neurons in any set, 4 are in two (layer 0: 2 of 4, layer 1: 2 of 4)
    assert o["overlap_rate"] == pytest.approx(0.5) and o["overlap_rate_per_layer"] == pytest.approx([0.5, 0.5])
    with pytest.raises(ValueError, match="two benchmarks"):
        stats.pairwise_overlap({"a": a})


def test_overlap_rate_counts_shared_neurons_where_jaccard_does_not():
    # three sets of 10, each pair sharing 5 different neurons: every neuron is in two sets, each pair's Jaccard 1/3
    sets = {n: np.zeros((1, 15), bool) for n in "abc"}
    sets["a"][0, 0:10] = sets["b"][0, 5:15] = True
    sets["c"][0, 0:5] = sets["c"][0, 10:15] = True
    o = stats.pairwise_overlap(sets)
    assert o["overlap_rate"] == 1.0 and o["jaccard"] == pytest.approx(1 / 3)
    disjoint = {"a": np.eye(2, dtype=bool), "b": ~np.eye(2, dtype=bool)}
    assert stats.overlap_rate(disjoint) == 0.0
