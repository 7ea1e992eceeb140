"""Every suite: the oracle scores 100 % on every split; splits are disjoint and stable; rewards are strict."""

import json

import pytest

from arm_ray.rollout.agent import run_episodes
from arm_ray.rollout.policies import OraclePolicy
from arm_ray.suites import get_suite
from arm_ray.world import OFFLINE_SUITES
from arm_ray.world.base import SPLITS


@pytest.mark.parametrize("name", list(OFFLINE_SUITES))
def test_oracle_solves_every_split(name):
    suite = get_suite(name)
    for split in SPLITS:
        eps = run_episodes(suite, suite.tasks(split, 12), OraclePolicy(suite), split)
        assert [e.reward for e in eps] == [1.0] * 12, (split, [e.messages[-2:] for e in eps if e.reward < 1][:1])
        assert all(e.invalid_actions == 0 and e.error is None for e in eps)


@pytest.mark.parametrize("name", list(OFFLINE_SUITES))
def test_splits_are_disjoint_and_stable(name):
    suite = get_suite(name)
    seen = {}
    for split in SPLITS:
        for t in suite.tasks(split, 50):
            sig = json.dumps(t.data, sort_keys=True)
            assert sig not in seen, f"{t.task_id} repeats {seen.get(sig)}"
            seen[sig] = t.task_id
    again = get_suite(name)
    assert [t.data for t in again.tasks("dev", 10)] == [t.data for t in suite.tasks("dev", 10)]
    assert [t.data for t in suite.tasks("dev", 5)] == [t.data for t in suite.tasks("dev", 10)][:5]


def _play(name, kind, actions):
    suite = get_suite(name)
    task = next(t for t in suite.tasks("test", 60) if t.kind == kind)
    env = suite.make_env(task)
    env.reset()
    results = [env.step(a) for a in actions]
    reward = env.reward()
    env.close()
    return task, results, reward


def test_retail_rewards_need_the_database_and_the_outputs():
    from arm_ray.world.retail import RetailSuite, tool_call_text

    suite = RetailSuite()
    task = next(t for t in suite.tasks("test", 60) if t.kind == "total")
    oid, (name, zip_) = task.data["order_id"], task.data["user"]
    env = suite.make_env(task)
    env.reset()
    assert "authenticate" in env.step(tool_call_text("get_order_details", {"order_id": oid})).messages[0]["content"]
    env.step(tool_call_text("find_user_id", {"name": name, "zip": zip_}))
    bad = env.step('<tool_call>\n{"name": "get_order_details", "arguments": {"order_id": 1\n</tool_call>')
    assert bad.invalid and "malformed" in bad.messages[0]["content"]
    end = env.step("I could not find it.")  # a plain reply: the scripted user stops
    assert end.done and "###STOP###" in end.messages[0]["content"]
    assert env.reward() == 0.0  # the required total never appeared
    # cancelling an order the gold actions do not cancel changes the database hash: reward 0
    task = next(t for t in suite.tasks("test", 60) if t.kind == "total" and
                task.data["db"]["orders"][t.data["order_id"]]["status"] == "pending")
    oid, (name, zip_) = task.data["order_id"], task.data["user"]
    env = suite.make_env(task)
    env.reset()
    env.step(tool_call_text("find_user_id", {"name": name, "zip": zip_}))
    env.step(tool_call_text("cancel_pending_order", {"order_id": oid, "reason": "x"}))
    env.step(f"The total of order {oid} is ${task.data['db']['orders'][oid]['total']}.")
    assert env.reward() == 0.0


def test_office_needs_switch_app_and_stops_when_stuck():
    from arm_ray.world.office import answer_text

    act = answer_text("t", {"app": "calendar", "action": "create_event", "title": "x", "date": "d", "time": "t"})
    _, results, reward = _play("office", "1-app", [act] * 5)
    assert results[0].invalid and "switch to calendar first" in results[0].messages[0]["content"]
    assert results[-1].done and results[-1].finish_reason == "stuck"
    assert reward == 0.0


def test_office_errors_name_files_without_the_episodes_temporary_directory():
    from arm_ray.world.office import answer_text

    acts = [answer_text("t", {"app": "system", "action": "switch_app", "target_app": "excel"}),
            answer_text("t", {"app": "excel", "action": "read_cell", "file": "missing.csv", "cell": "A1"})]
    seen = [_play("office", "1-app", acts)[1][1].messages[0]["content"] for _ in range(2)]
    assert "missing.csv" in seen[0] and "arm-office-" not in seen[0]
    assert seen[0] == seen[1]  # the same observation in every episode: rollouts stay reproducible


def test_shell_listings_do_not_show_when_the_episode_ran():
    acts = ["Think: look.\nAct: bash\n```bash\nls -l --time-style=+%s\n```"]
    task, results, _ = _play("shell", "count_lines", acts)
    out = results[0].messages[0]["content"]
    assert all(name in out for name in task.data["files"]) and "1767225600" in out


def test_shell_answer_must_match_exactly():
    from arm_ray.world.shell import act_answer

    task, results, reward = _play("shell", "count_lines", [act_answer("guess", "999")])
    assert results[0].done and reward == 0.0
    _, results, _ = _play("shell", "count_lines", ["I think it is 3."])
    assert results[0].done and results[0].invalid and results[0].finish_reason == "invalid"


def test_sql_compares_values_as_sets():
    from arm_ray.world.sql import SqlSuite

    suite = SqlSuite()
    task = next(t for t in suite.tasks("test", 60) if t.kind == "max")
    env = suite.make_env(task)
    env.reset()
    obs = env.step(f"Action: Operation\n```sql\n{task.data['gold_sql']}\n```")
    assert obs.messages[0]["content"].startswith("[(")
    env.step('Action: Answer\nFinal Answer: ["Nobody"]')
    assert env.reward() == 0.0
