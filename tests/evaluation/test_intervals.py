"""Bootstrap intervals against values computed by hand from the resampling distributions."""

import pytest

from arm_ray.evaluation.intervals import model_intervals, paired_difference


def rows(model, bench, rewards, split="test"):
    return [{"model": model, "benchmark": bench, "split": split, "task_id": f"{bench}-{i}", "reward": r}
            for i, r in enumerate(rewards)]


def test_mean_of_two_tasks_spans_its_whole_range():
    # resampling [0, 1] gives means 0, 1/2, 1 with probabilities 1/4, 1/2, 1/4: the 2.5 % and 97.5 % points are 0 and 1
    r = model_intervals(rows("m", "a", [0.0, 1.0]), ["m"], ["a"], n_boot=20000)
    assert r["m"]["AVG"] == [0.5, 0.0, 1.0] and r["m"]["WS"] == [0.5, 0.0, 1.0]


def test_constant_rewards_give_a_point_interval_and_ws_is_the_worst_suite():
    data = rows("m", "a", [1.0, 1.0, 1.0]) + rows("m", "b", [0.0, 1.0])
    r = model_intervals(data, ["m"], ["a", "b"], n_boot=20000)["m"]
    # WS = min(1, mean_b) = mean_b: its interval is mean_b's, [0, 1]; AVG = (1 + mean_b) / 2: [0.5, 1]
    assert r["WS"] == [0.5, 0.0, 1.0]
    assert r["AVG"] == [0.75, 0.5, 1.0]
    assert model_intervals(rows("c", "a", [0.3] * 5), ["c"], ["a"])["c"]["AVG"] == pytest.approx([0.3, 0.3, 0.3])


def test_paired_difference_keeps_pairs_together():
    # per-task differences [1, 0, 0]: the resampled mean is k/3 with k ~ Binomial(3, 1/3):
    # P(0) = 8/27 > 2.5 %, P(1) = 1/27 = 3.7 % > 2.5 %: the interval is [0, 1] around 1/3
    data = rows("arm", "a", [1.0, 1.0, 0.0]) + rows("bb", "a", [0.0, 1.0, 0.0])
    d = paired_difference(data, "arm", "bb", ["a"], n_boot=20000)
    assert d["a"] == pytest.approx([1 / 3, 0.0, 1.0]) and d["AVG"] == d["a"] and d["WS"] == d["a"]
    # identical models: every resampled difference is 0, whatever the rewards (an unpaired bootstrap would not be)
    same = rows("x", "a", [0.0, 1.0, 1.0, 0.0]) + rows("y", "a", [0.0, 1.0, 1.0, 0.0])
    assert paired_difference(same, "x", "y", ["a"])["a"] == [0.0, 0.0, 0.0]


def test_unpaired_tasks_are_refused():
    data = rows("x", "a", [1.0, 0.0]) + rows("y", "a", [1.0])
    with pytest.raises(ValueError, match="not run on the same test tasks of a"):
        paired_difference(data, "x", "y", ["a"])
    with pytest.raises(ValueError, match="no test episode of z on a"):
        model_intervals(data, ["z"], ["a"])


def test_trials_of_a_task_are_resampled_as_one_task():
    # two tasks with 3 trials each, all-fail and all-pass: still two units, so the interval is the two-task
    # one [0, 1]; counted as 6 independent tasks it would be narrower (the 2.5 % point of k/6 is above 0)
    data = [{"model": "m", "benchmark": "a", "split": "test", "task_id": f"a-{i}#{t}", "reward": float(i)}
            for i in range(2) for t in range(3)]
    assert model_intervals(data, ["m"], ["a"], n_boot=20000)["m"]["AVG"] == [0.5, 0.0, 1.0]
    # a task's value is its trials' mean: trials [1, 0] and [1, 1] give 0.5 and 1
    data = rows("m", "a", [1.0, 0.0]) + rows("m", "b", [1.0, 1.0])
    data = [{**r, "benchmark": "a", "task_id": f"a-{r['benchmark']}#{r['task_id'][-1]}"} for r in data]
    assert model_intervals(data, ["m"], ["a"], n_boot=20000)["m"]["AVG"] == [0.75, 0.5, 1.0]


def test_an_aggregate_is_one_unit_of_avg_and_ws():
    # a and b joined: unit means (1 + 0) / 2 = 0.5 and c 0.25: AVG 0.375, WS 0.25
    data = rows("m", "a", [1.0, 1.0]) + rows("m", "b", [0.0, 0.0]) + rows("m", "c", [0.0, 1.0, 0.0, 0.0])
    groups = {"ab": ["a", "b"], "c": ["c"]}
    r = model_intervals(data, ["m"], ["a", "b", "c"], groups=groups)["m"]
    assert r["AVG"][0] == pytest.approx(0.375) and r["WS"][0] == pytest.approx(0.25)
    other = rows("n", "a", [0.0, 1.0]) + rows("n", "b", [0.0, 0.0]) + rows("n", "c", [0.0, 1.0, 0.0, 0.0])
    d = paired_difference(data + other, "m", "n", ["a", "b", "c"], groups=groups, worst="ab")
    assert d["ab"][0] == pytest.approx(0.25) and d["WS"] == d["ab"] and d["WS_suite"] == "ab"
    assert d["AVG"][0] == pytest.approx(0.125)
