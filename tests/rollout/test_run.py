"""The generation-agnostic rollout: oracle scores, failures recorded, sharding, eval.parquet."""

import json

import pytest

from arm_ray.rollout import results
from arm_ray.rollout.agent import Turn
from arm_ray.rollout.policies import OraclePolicy
from arm_ray.rollout.run import SuiteRun, rollout, sampling_by_suite
from arm_ray.suites import get_suite
from arm_ray.world import OFFLINE_SUITES

RUNS = [SuiteRun(f"bench_{s}", s, "test", 5) for s in OFFLINE_SUITES]


class MixedOracle:
    """The oracle of whichever suite a turn belongs to (one policy for a mixed batch)."""

    def __init__(self):
        self.oracles = {s: OraclePolicy(get_suite(s)) for s in OFFLINE_SUITES}
        self.batches = []

    def __call__(self, turns: list[Turn]):
        self.batches.append(len(turns))
        return [self.oracles[t.task.suite]([t])[0] for t in turns]


def test_oracle_actions_score_100_percent_on_every_suite():
    policy = MixedOracle()
    rows = rollout(policy, "oracle", RUNS)
    assert len(rows) == 5 * len(OFFLINE_SUITES)
    assert all(r["reward"] == 1.0 and r["success"] and r["finish_reason"] != "error" for r in rows)
    assert {r["benchmark"] for r in rows} == {f"bench_{s}" for s in OFFLINE_SUITES}
    assert policy.batches[0] == len(rows)  # every suite's episodes share the first batch


def test_shards_partition_the_tasks():
    whole = rollout(MixedOracle(), "m", RUNS)
    parts = [r for s in range(3) for r in rollout(MixedOracle(), "m", [SuiteRun(x.benchmark, x.suite, x.split, x.n,
                                                                                s, 3) for x in RUNS])]
    assert sorted(r["task_id"] for r in parts) == sorted(r["task_id"] for r in whole)


def test_an_environment_that_raises_is_recorded_not_fatal(monkeypatch):
    from arm_ray.world.retail import RetailEnv

    real = RetailEnv.step

    def step(self, text):
        if self.task.task_id.endswith("-1"):
            raise RuntimeError("database went away")
        return real(self, text)

    monkeypatch.setattr(RetailEnv, "step", step)
    rows = rollout(MixedOracle(), "m", [SuiteRun("tau", "retail", "test", 3)])
    assert [r["finish_reason"] == "error" for r in rows] == [False, True, False]
    bad = rows[1]
    assert bad["reward"] == 0.0 and "database went away" in json.loads(bad["trajectory"])["error"]
    assert rows[0]["reward"] == 1.0 and rows[2]["reward"] == 1.0


def test_context_limit_ends_the_episode():
    rows = rollout(lambda turns: [None] * len(turns), "m", [SuiteRun("os", "shell", "test", 2)])
    assert [r["finish_reason"] for r in rows] == ["context", "context"]
    assert all(r["steps"] == 0 and r["reward"] == 0.0 for r in rows)


def test_eval_parquet_round_trip_and_order(tmp_path):
    rows = rollout(MixedOracle(), "m", [SuiteRun("os", "shell", "test", 3)])
    results.write_eval(tmp_path / "eval.parquet", list(reversed(rows)))
    back = results.read_eval(tmp_path / "eval.parquet")
    assert [r["task_id"] for r in back] == [r["task_id"] for r in rows]
    assert set(back[0]) == set(results.COLUMNS)
    assert json.loads(back[0]["trajectory"])["messages"][0]["role"] == "system"
    assert not list(tmp_path.glob(".*tmp*"))


def test_sampling_is_keyed_by_suite_name():
    s = sampling_by_suite([SuiteRun("tau", "retail", "dev", 1)], {"tau": {"temperature": 0.2}})
    assert s == {"retail": {"temperature": 0.2}}
    with pytest.raises(ValueError, match="two benchmarks"):
        sampling_by_suite([SuiteRun("a", "retail", "dev", 1), SuiteRun("b", "retail", "dev", 1)],
                          {"a": {"temperature": 0.2}, "b": {"temperature": 0.7}})
