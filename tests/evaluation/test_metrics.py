"""Metrics on a hand-made results table, against values computed by hand."""

import pytest

from arm_ray.evaluation import metrics

BENCH = ["a", "b", "c"]
SCORES = {
    "e1": {"a": 0.8, "b": 0.2, "c": 0.5},
    "e2": {"a": 0.4, "b": 0.6, "c": 0.5},
    "merged": {"a": 0.4, "b": 0.3, "c": 0.25},
    "zero": {"a": 0.0, "b": 0.6, "c": 0.5},
}


def rows(model, bench, rewards, invalid=0, steps=2, finish="done"):
    return [{"model": model, "benchmark": bench, "split": "test", "task_id": f"{bench}-{finish}-{i}", "reward": r,
             "invalid_actions": invalid, "steps": steps, "finish_reason": finish} for i, r in enumerate(rewards)]


def test_summary_scores_and_rates():
    data = rows("m", "a", [1.0, 0.0, 1.0, 0.0], invalid=1, steps=4) + rows("m", "a", [0.0], finish="limit", steps=4)
    data += [{**r, "split": "dev"} for r in rows("m", "a", [1.0] * 3)]  # another split: ignored
    s = metrics.summarize(data, "test")["m"]["a"]
    assert s["episodes"] == 5
    assert s["score"] == pytest.approx(0.4)
    assert s["invalid_rate"] == pytest.approx(4 / 20)  # 4 invalid actions over 5 x 4 steps
    assert s["limit_rate"] == pytest.approx(0.2)
    assert s["pass^k"] == {"1": pytest.approx(0.4)}  # one trial per task: pass^1 is the success rate


def test_best_of_n_avg_ws_rhm_by_hand():
    best = metrics.best_of_n(SCORES, ["e1", "e2"], BENCH)
    assert best == {"a": 0.8, "b": 0.6, "c": 0.5}
    agg = metrics.aggregates(SCORES["merged"], best, BENCH)
    assert agg["AVG"] == pytest.approx((0.4 + 0.3 + 0.25) / 3)
    assert agg["WS"] == pytest.approx(0.25)
    # normalised 0.5, 0.5, 0.5 -> harmonic mean 0.5
    assert agg["RHM"] == pytest.approx(0.5)
    e1 = metrics.aggregates(SCORES["e1"], best, BENCH)  # normalised 1, 1/3, 1
    assert e1["RHM"] == pytest.approx(3 / (1 + 3 + 1))
    assert metrics.aggregates(best, best, BENCH)["RHM"] == pytest.approx(1.0)
    assert metrics.aggregates(SCORES["zero"], best, BENCH)["RHM"] == 0.0


def test_rhm_skips_benchmarks_no_expert_solves():
    best = {"a": 0.5, "b": 0.0}
    agg = metrics.aggregates({"a": 0.25, "b": 0.0}, best, ["a", "b"])
    assert agg["RHM"] == pytest.approx(0.5) and agg["WS"] == 0.0
    assert metrics.aggregates({"a": 0.0, "b": 0.0}, {"a": 0.0, "b": 0.0}, ["a", "b"])["RHM"] is None


def test_table_rows_and_relative_change():
    data, md = metrics.table(SCORES, [("e1 (expert)", "e1"), ("e2 (expert)", "e2"), ("BEST", metrics.BEST),
                                      ("merged", "merged")], ["e1", "e2"], BENCH)
    assert [d["label"] for d in data] == ["e1 (expert)", "e2 (expert)", "BEST", "merged"]
    assert data[2]["a"] == 0.8 and data[2]["RHM"] == pytest.approx(1.0)
    lines = md.splitlines()
    assert lines[0] == "| model | a | b | c | AVG | WS | RHM |"
    best_line = next(x for x in lines if x.startswith("| BEST |"))
    assert "(" not in best_line  # the reference row carries no relative change
    merged = next(x for x in lines if x.startswith("| merged |"))
    assert "40.0 (-50.0%)" in merged  # 0.4 against 0.8
    assert "0.50 (-50.0%)" in merged  # RHM 0.5 against 1.0
    assert "25.0 (-50.0%)" in merged  # WS 0.25 against BEST's WS 0.5


def test_table_without_the_experts_has_no_best_of_n():
    scores = {"merged": SCORES["merged"]}
    data, md = metrics.table(scores, [("merged", "merged")], ["e1", "e2"], BENCH)
    assert data[0]["RHM"] is None and data[0]["AVG"] == pytest.approx(sum(SCORES["merged"].values()) / 3)
    assert "(" not in md and "n/a" in md  # nothing to compare against


def test_rates_table_shows_environment_errors():
    data = rows("m", "a", [1.0, 0.0], steps=2) + rows("m", "a", [0.0, 0.0], finish="error", steps=1)
    md = metrics.rates_table(metrics.summarize(data, "test"), ["m"], ["a"])
    assert "a invalid / limit / error" in md and "| m | 0% / 0% / 50% |" in md


def test_an_aggregate_counts_once_in_avg_ws_and_rhm():
    groups = metrics.units(BENCH, {"a": "ab", "b": "ab"})
    assert groups == {"ab": ["a", "b"], "c": ["c"]}
    best = metrics.best_of_n(SCORES, ["e1", "e2"], BENCH)  # a 0.8, b 0.6, c 0.5: ab 0.7
    agg = metrics.aggregates(SCORES["merged"], best, BENCH, groups)  # ab 0.35, c 0.25
    assert agg["AVG"] == pytest.approx(0.30) and agg["WS"] == pytest.approx(0.25)
    assert agg["RHM"] == pytest.approx(2 / (0.7 / 0.35 + 0.5 / 0.25))  # normalised 0.5 and 0.5
    data, md = metrics.table(SCORES, [("merged", "merged")], ["e1", "e2"], BENCH, groups)
    assert data[0]["ab"] == pytest.approx(0.35)
    assert md.splitlines()[0] == "| model | a | b | c | ab | AVG | WS | RHM |"


def test_score_is_the_mean_over_tasks_of_their_trials():
    # task 0: trials 1, 1, 1; task 1: one trial, 0: 2 tasks -> 0.5 (over episodes it would be 0.75)
    data = [{"model": "m", "benchmark": "a", "split": "test", "task_id": f"a-0#{t}", "reward": 1.0,
             "invalid_actions": 0, "steps": 1, "finish_reason": "done"} for t in range(3)]
    data += [{**data[0], "task_id": "a-1#0", "reward": 0.0}]
    s = metrics.summarize(data, "test")["m"]["a"]
    assert s["score"] == pytest.approx(0.5) and s["episodes"] == 4 and s["tasks"] == 2
