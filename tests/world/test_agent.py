"""The agent loop: failures stay in their episode; limits; exported data loads in the roles layer."""

from arm_ray.roles.formats import parse_record
from arm_ray.roles.spans import TrajectoryEncoder
from arm_ray.world import SUITES, get_suite
from arm_ray.world.agent import OraclePolicy, run_episodes, training_record
from arm_ray.world.base import StepResult
from arm_ray.world.retail import RetailEnv, RetailSuite


class _Exploding(RetailEnv):
    def step(self, action_text):
        raise RuntimeError("database offline")


class _Flaky(RetailSuite):
    def make_env(self, task):
        return _Exploding(task) if task.task_id.endswith("-1") else RetailEnv(task)


def test_an_environment_that_raises_fails_only_its_episode():
    suite = _Flaky()
    eps = run_episodes(suite, suite.tasks("test", 3), OraclePolicy(suite), "test")
    assert [e.finish_reason for e in eps][1] == "error" and "database offline" in eps[1].error
    assert eps[0].reward == 1.0 and eps[2].reward == 1.0
    assert eps[1].record("m")["reward"] == 0.0 and eps[1].record("m")["success"] is False


class _Stubborn(RetailEnv):
    def step(self, action_text):
        return StepResult([{"role": "tool", "content": "try again"}])


class _Endless(RetailSuite):
    def make_env(self, task):
        return _Stubborn(task)


def test_task_limit():
    suite = _Endless()
    call = '<tool_call>\n{"name": "find_user_id", "arguments": {"name": "A", "zip": "1"}}\n</tool_call>'
    eps = run_episodes(suite, suite.tasks("test", 2), lambda turns: [call] * len(turns), "test")
    assert all(e.finish_reason == "limit" and e.steps == suite.max_steps for e in eps)


def test_exported_episodes_load_and_mark_role_spans(tokenizer):
    enc = TrajectoryEncoder(tokenizer)
    for name in SUITES:
        suite = get_suite(name)
        eps = run_episodes(suite, suite.tasks("calibration", 3), OraclePolicy(suite), "calibration")
        trajs = [parse_record(training_record(e, suite.parser), f"{name}:{i}") for i, e in enumerate(eps)]
        for t, e in zip(trajs, enc.encode(trajs, {suite.parser: [_role(suite.parser)]}, keep_text=True)):
            assert t.benchmark == suite.parser
            # every oracle turn is one action (retail's closing reply to the user is plain text)
            n_actions = sum(m["role"] == "assistant" and (name != "retail" or "<tool_call>" in m["content"])
                            for m in t.messages)
            assert len(e.spans) == n_actions, (name, [e.text[s.start:s.end] for s in e.spans])


def _role(parser):
    from arm_ray.roles.parsers import default_role

    return default_role(parser)
