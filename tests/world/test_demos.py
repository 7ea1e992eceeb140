"""The offline suites' `demos` option: solved train episodes after the instructions, checked line by line."""

import json

import pytest

from arm_ray.errors import ConfigError
from arm_ray.experts.scoring import oracle_records
from arm_ray.rollout.agent import run_episodes
from arm_ray.rollout.policies import OraclePolicy
from arm_ray.suites import get_suite


@pytest.fixture(scope="module")
def shell_demos(tmp_path_factory):
    path = tmp_path_factory.mktemp("demos") / "shell.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in oracle_records("shell", "train", 2)))
    return path


def test_demos_end_the_system_turn_and_change_nothing_else(shell_demos):
    plain, shown = get_suite("shell"), get_suite("shell", options={"demos": str(shell_demos), "n_demos": 2})
    task = plain.tasks("test", 1)[0]
    a, b = plain.make_env(task).reset(), shown.make_env(task).reset()
    demos = [json.loads(x) for x in shell_demos.read_text().splitlines()]
    assert b.messages[0]["content"].startswith(a.messages[0]["content"] + "\n\nExamples of solved tasks:")
    assert demos[1]["messages"][1]["content"] in b.messages[0]["content"] and "\n\n---\n\n" in b.messages[0]["content"]
    assert b.messages[1:] == a.messages[1:] and b.tools == a.tools
    # the task, its oracle and its reward are the suite's own
    eps = run_episodes(shown, shown.tasks("test", 3), OraclePolicy(shown), "test")
    assert [e.reward for e in eps] == [1.0, 1.0, 1.0]


def test_bad_demo_files_name_the_file_and_line(tmp_path, shell_demos):
    with pytest.raises(ConfigError, match="is not a file"):
        get_suite("shell", options={"demos": str(tmp_path / "none.jsonl")})
    bad = tmp_path / "bad.jsonl"
    bad.write_text(shell_demos.read_text().splitlines()[0] + "\n{oops\n")
    with pytest.raises(ConfigError, match=r"bad.jsonl:2: not JSON"):
        get_suite("shell", options={"demos": str(bad), "n_demos": 2})
    bad.write_text(json.dumps({"messages": "hi"}) + "\n")
    with pytest.raises(ConfigError, match=r"bad.jsonl:1: expected"):
        get_suite("shell", options={"demos": str(bad)})
    with pytest.raises(ConfigError, match=r"shell.jsonl:1: a 'agentbench_os' episode; this suite's are 'dbbench'"):
        get_suite("sql", options={"demos": str(shell_demos)})
    with pytest.raises(ConfigError, match="2 episodes, n_demos asks for 5"):
        get_suite("shell", options={"demos": str(shell_demos), "n_demos": 5})
    with pytest.raises(ConfigError, match="unexpected keyword|n_shots"):
        get_suite("shell", options={"n_shots": 1})
