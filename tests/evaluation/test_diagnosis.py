"""Dev diagnosis: which benchmarks are weak, on hand-made dev scores."""

import pytest

from arm_ray.evaluation.diagnosis import gaps, weak_benchmarks

DEV = {"backbone": {"tau": 0.5, "office": 0.1, "os": 0.3},
       "tau_x": {"tau": 0.55}, "office_x": {"office": 0.7}, "os_x": {"os": 0.6}}
DONORS = {"tau": "tau_x", "office": "office_x", "os": "os_x"}


def test_largest_gap_is_picked():
    g = gaps(DEV, DONORS, "backbone")
    assert g == pytest.approx({"tau": 0.05, "office": 0.6, "os": 0.3})
    assert weak_benchmarks(g, 0.0, 1, "dev") == [{"benchmark": "office", "gap": pytest.approx(0.6), "source": "dev"}]


def test_threshold_and_config_order():
    g = gaps(DEV, DONORS, "backbone")
    assert [w["benchmark"] for w in weak_benchmarks(g, 0.1, None, "dev")] == ["office", "os"]
    assert [w["benchmark"] for w in weak_benchmarks(g, 0.0, 2, "dev")] == ["office", "os"]
    assert weak_benchmarks(g, 0.9, None, "dev") == []


def test_ties_go_to_config_order():
    g = {"x": 0.2, "y": 0.2, "z": 0.1}
    assert [w["benchmark"] for w in weak_benchmarks(g, 0.0, 1, "dev")] == ["x"]
