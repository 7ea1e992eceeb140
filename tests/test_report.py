"""report.md's finding: what transplantation did, read from the paired intervals."""

from arm_ray.report import finding


def report(diff, weak=("a",)):
    scores = {"ea": {"a": {"score": 0.8}}, "backbone": {"a": {"score": 0.4}}}
    return {"weak": [{"benchmark": b} for b in weak], "experts": {"a": {"name": "ea"}, "b": {"name": "eb"}},
            "evaluation": {"benchmarks": ["a", "b", "sql"], "summary": scores,
                           "paired": {"difference": diff}}}


def test_finding_says_what_moved_and_what_it_cost():
    diff = {"a": [0.2, 0.1, 0.3], "b": [0.0, -0.1, 0.1], "sql": [-0.1, -0.2, -0.05], "AVG": [0.03, -0.01, 0.07],
            "WS": [0.0, -0.05, 0.05]}
    text = finding(report(diff))
    assert text.startswith("Transplantation raised every weak benchmark (a +20.0 [+10.0, +30.0] points)")
    assert "of the test gap to the donor expert it recovered a 50 %" in text  # 0.2 of the 0.8 - 0.4 gap
    assert "Elsewhere it cost sql -10.0 [-20.0, -5.0] points" in text
    assert text.endswith("Overall: AVG +3.0 [-1.0, +7.0], WS +0.0 [-5.0, +5.0] points.")


def test_finding_when_nothing_measurable_happened():
    diff = {"a": [0.02, -0.05, 0.1], "b": [0.0, -0.1, 0.1], "sql": [0.0, 0.0, 0.0], "AVG": [0.0, -0.1, 0.1],
            "WS": [0.0, -0.1, 0.1]}
    text = finding(report(diff))
    assert text.startswith("Transplantation did not measurably raise the weak benchmarks (a +2.0 [-5.0, +10.0] points)")
    assert "no other benchmark moved measurably" in text
    assert finding(report(diff, weak=())).startswith("No benchmark was weak on dev")
