"""The agent loop: failures stay in their episode; limits; exported data loads in the roles layer."""

import threading
import time
from collections import Counter

from arm_ray.roles.formats import parse_record
from arm_ray.roles.spans import TrajectoryEncoder
from arm_ray.rollout.agent import run_episodes, run_mixed, training_record
from arm_ray.rollout.policies import OraclePolicy
from arm_ray.suites import get_suite
from arm_ray.world import OFFLINE_SUITES
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


class _SlowOracle:
    """A streaming policy: the oracle's reply to episode k's turn comes back after k + 1 polls."""

    def __init__(self, jobs):
        self.suites = {t.task_id: s for s, t, _ in jobs}
        self.waiting: dict[int, list] = {}
        self.log: list[tuple[str, int, int]] = []  # (event, key, turn) in order

    def submit(self, key, turn):
        n = sum(m["role"] == "assistant" for m in turn.messages)
        self.log.append(("submit", key, n))
        self.waiting[key] = [key + 1, self.suites[turn.task.task_id].oracle_step(turn.task, turn.messages), n]

    def poll(self):
        time.sleep(0.05)  # like an engine step: environment steps (a retail one takes well under 1 ms) finish meanwhile
        out = []
        for key in sorted(self.waiting):
            w = self.waiting[key]
            w[0] -= 1
            if w[0] == 0:
                out.append((key, w[1]))
                self.log.append(("reply", key, w[2]))
                del self.waiting[key]
        return out

    def pending(self):
        return len(self.waiting)


def test_streaming_policy_episodes_do_not_wait_for_each_other():
    jobs = [(get_suite(n), t, "test") for n in OFFLINE_SUITES for t in get_suite(n).tasks("test", 2)]
    batch = run_mixed(jobs, _oracles(jobs))
    slow = _SlowOracle(jobs)
    stream = run_mixed(jobs, slow)
    assert [e.messages for e in stream] == [e.messages for e in batch]
    assert all(e.reward == 1.0 for e in stream)
    # the fastest episode's second turn went in before the slowest episode's first reply came back
    last = len(jobs) - 1
    assert slow.log.index(("submit", 0, 1)) < slow.log.index(("reply", last, 0))


class _Gathering(RetailEnv):
    """A reset that waits for the other episodes' resets (as sandboxes start at once); serial resets time out."""

    def __init__(self, task, barrier):
        super().__init__(task)
        self.barrier = barrier

    def reset(self):
        self.barrier.wait(timeout=20)
        return super().reset()


class _GatheringSuite(RetailSuite):
    def __init__(self, n, broken=None):
        super().__init__()
        self.barrier, self.broken = threading.Barrier(n), broken

    def make_env(self, task):
        if task.task_id == self.broken:
            raise OSError("no sandbox")
        return _Gathering(task, self.barrier)


def test_resets_run_together_and_a_broken_one_ends_only_its_episode():
    suite = _GatheringSuite(4)
    tasks = suite.tasks("test", 5)
    suite.broken = tasks[2].task_id
    done = []
    for policy in (_oracles([(suite, t, "test") for t in tasks]), _SlowOracle([(suite, t, "test") for t in tasks])):
        suite.barrier.reset()
        eps = run_mixed([(suite, t, "test") for t in tasks], policy, progress=done.append, clock=(clock := Counter()))
        assert [e.finish_reason for e in eps].count("error") == 1 and "no sandbox" in eps[2].error
        assert all(e.reward == 1.0 for i, e in enumerate(eps) if i != 2)
        assert clock["reset"] > 0 and clock["loop"] > 0
    assert sum(done) == 2 * len(tasks)  # the broken episode counts as done too: bars reach their total


def _oracles(jobs):
    suites = {t.task_id: s for s, t, _ in jobs}
    return lambda turns: [suites[t.task.task_id].oracle_step(t.task, t.messages) for t in turns]


def test_exported_episodes_load_and_mark_role_spans(tokenizer):
    enc = TrajectoryEncoder(tokenizer)
    for name in OFFLINE_SUITES:
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
