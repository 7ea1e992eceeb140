"""Eq. 3-5 on hand-computed tensors."""

import numpy as np
import pytest

from arm_ray import selection


def test_topk_count_is_ceil_and_robust():
    assert selection.topk_count(0.1, 30) == 3  # 0.1 * 30 is 3.0000000000000004 in floating point
    assert selection.topk_count(0.1, 25) == 3
    assert selection.topk_count(1.0, 7) == 7
    for bad in (0, -0.1, 1.5):
        with pytest.raises(ValueError):
            selection.topk_count(bad, 10)


def test_topk_ties_go_to_lower_index():
    s = np.array([1.0, 5.0, 3.0, 5.0, 3.0, 0.0])
    assert selection.topk_layer(s, 0.5).tolist() == [1, 2, 3]  # 5, 5, then the first 3
    assert selection.topk_layer(np.zeros(4), 0.5).tolist() == [0, 1]


def test_nan_saliency_is_refused():
    with pytest.raises(ValueError, match="NaN"):
        selection.topk_layer(np.array([1.0, np.nan]), 0.5)


def test_salient_set_and_jaccard():
    s = np.array([[3.0, 1.0, 2.0, 0.0], [0.0, 0.0, 9.0, 8.0]])
    a = selection.salient_set(s, 0.5)
    assert a.tolist() == [[True, False, True, False], [False, False, True, True]]
    b = np.array([[True, True, False, False], [False, False, True, True]])
    assert selection.jaccard(a, b) == pytest.approx(3 / 5)  # |∩| = 3, |∪| = 5
    assert selection.jaccard(a, a) == 1.0


def test_aos_and_selection_ties_go_to_first_listed():
    e = {"x": np.array([[1, 1, 0, 0]], bool), "y": np.array([[0, 0, 1, 1]], bool)}
    cands = {"g1": {"x": np.array([[1, 0, 1, 0]], bool), "y": np.array([[0, 0, 1, 1]], bool)},
             "g2": {"x": np.array([[1, 1, 0, 0]], bool), "y": np.array([[0, 1, 1, 0]], bool)},
             "g3": {"x": np.array([[0, 0, 1, 1]], bool), "y": np.array([[1, 1, 0, 0]], bool)}}
    aos = selection.aos_table(cands, e)
    assert aos["g1"] == {"x": pytest.approx(1 / 3), "y": 1.0}
    assert aos["g2"] == {"x": 1.0, "y": pytest.approx(1 / 3)}
    assert aos["g3"] == {"x": 0.0, "y": 0.0}
    assert selection.select(aos, ["g1", "g2", "g3"]) == "g1"
    assert selection.select(aos, ["g2", "g1", "g3"]) == "g2"


def test_an_aggregate_counts_once_in_the_mean_aos():
    aos = {"g1": {"r": 0.9, "a": 0.9, "s": 0.1}, "g2": {"r": 0.5, "a": 0.5, "s": 0.8}}
    # per benchmark g1 wins (0.633 > 0.6); with r and a as one unit g2 does (0.65 > 0.5)
    assert selection.select(aos, ["g1", "g2"]) == "g1"
    groups = {"tau": ["r", "a"], "s": ["s"]}
    assert selection.select(aos, ["g1", "g2"], groups) == "g2"
    assert selection.mean_aos(aos["g2"], groups) == pytest.approx(0.65)
