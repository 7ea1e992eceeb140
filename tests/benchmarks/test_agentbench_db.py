"""AgentBench DB-bench's own tasks on a real MariaDB server: the official protocol, checker and gold replay."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from arm_ray.benchmarks import agentbench_db as db
from arm_ray.errors import ConfigError
from arm_ray.rollout.agent import run_episodes
from arm_ray.rollout.policies import OraclePolicy
from arm_ray.suites import check_suite, get_suite

SAMPLE = [0, 13, 17, 40, 77, 99, 100, 101, 150, 199, 200, 201, 225, 250, 278, 295, 299]  # reads < 100 <= writes


@pytest.fixture(scope="module")
def suite(agentbench_dir):
    s = get_suite("agentbench_db", "suite", {"data_dir": str(agentbench_dir), "statement_timeout_s": 1,
                                             "order": "file"})
    s.check()
    yield s
    s.close()


def _replies(*texts):
    """A policy that writes `texts` in turn, the same for every episode."""
    def policy(turns):
        return [texts[min(sum(m["role"] == "assistant" for m in t.messages) - 1, len(texts) - 1)] for t in turns]
    return policy


def test_gold_replay_scores_one_and_doing_nothing_zero_on_a_sample(suite):
    tasks = [suite.tasks("test")[i] for i in SAMPLE]
    assert [t.kind in db.WRITES for t in tasks] == [i >= 100 for i in SAMPLE]
    gold = run_episodes(suite, tasks, OraclePolicy(suite), "test")
    nothing = run_episodes(suite, tasks, _replies("Action: Answer\nFinal Answer: []"), "test")
    scored = {i: (g.reward, n.reward) for i, g, n in zip(SAMPLE, gold, nothing)}
    # 225: the label's UPDATE gives neither the official md5 nor the starting table's (the data's own fault)
    assert scored == {i: (0.0 if i == 225 else 1.0, 0.0) for i in SAMPLE}
    # 13 names a column twice, 17 and 77 have a row of another width: the official set-up fails there too
    assert {i for i, g in zip(SAMPLE, gold) if (g.details or {}).get("init_error")} == {13, 17, 77}
    # 278 and 295 compare text with a number in their WHERE: they pass only without strict mode
    write = gold[SAMPLE.index(201)]
    assert write.messages[3]["content"].startswith("The table needs this change.\nAction: Operation\n```sql\n")
    assert write.messages[4]["content"] == db.NO_RESULT and write.details["operations"] == 1


def test_the_official_protocol(suite):
    task = suite.tasks("test")[0]  # a read task on "Jiu-Jitsu Championships Results"
    table = task.data["entry"]["table"]["table_name"]
    ep, = run_episodes(suite, [task], _replies(
        "Let me look.\nAction: Operation\n```sql\nSELECT COUNT(*) FROM `" + table + "`;\n```",
        "Oops.\nAction: Operation\n```sql\nSELEC nonsense\n```",
        "<think>Action: Operation\n```sql\nDROP TABLE x\n```</think>Done.\nAction: Answer\n"
        "Final Answer: [\"Women +60kg Bronze\"]"), "test")
    user = [m["content"] for m in ep.messages if m["role"] == "user"]
    assert ep.messages[1] == {"role": "assistant", "content": "Ok."} and user[0] == db.PROMPT
    assert user[1] == task.data["entry"]["description"] + "\n" + task.data["entry"]["add_description"]
    assert user[2] == f"[({len(task.data['entry']['table']['table_info']['rows'])},)]"
    assert user[3].startswith("1064: You have an error in your SQL syntax")
    assert ep.reward == 1.0 and ep.finish_reason == "answer" and ep.details["operations"] == 2


def test_malformed_replies_end_the_episode_as_invalid_never_a_crash(suite):
    task = suite.tasks("test")[150]
    for reply in ("no action at all", "Action: Operation\nSELECT 1 without a fence", "Action: Operation```sql x```",
                  "Final Answer: [1]"):  # the answer line must follow a newline
        ep, = run_episodes(suite, [task], _replies(reply), "test")
        assert (ep.finish_reason, ep.invalid_actions, ep.reward, ep.error) == ("invalid", 1, 0.0, None), reply


def test_output_is_cut_and_a_slow_statement_stopped(suite):
    task = suite.tasks("test")[0]
    ep, = run_episodes(suite, [task], _replies("Action: Operation\n```sql\nSELECT REPEAT('x', 5000);\n```",
                                               "Action: Operation\n```sql\nSELECT SLEEP(5);\n```",
                                               "Action: Answer\nFinal Answer: []"), "test")
    long, slow = [m["content"] for m in ep.messages if m["role"] == "user"][2:4]
    assert len(long) == 800 + len("[TRUNCATED]") and long.endswith("[TRUNCATED]")
    assert slow in ("[(1,)]",) or slow.startswith("1969")  # MariaDB ends SLEEP early (1) or stops the statement


def test_operations_stop_at_max_round(agentbench_dir):
    s = get_suite("agentbench_db", "suite", {"data_dir": str(agentbench_dir), "max_round": 2})
    try:
        ep, = run_episodes(s, [s.tasks("test")[0]], _replies("Action: Operation\n```sql\nSELECT 1;\n```"), "test")
    finally:
        s.close()
    assert ep.details["operations"] == 2 and ep.steps == 3 and ep.finish_reason == "limit"


def test_mixed_order_puts_every_type_in_the_first_tasks(suite, agentbench_dir):
    mixed = get_suite("agentbench_db", "suite", {"data_dir": str(agentbench_dir)})
    first = mixed.tasks("test", 10)
    assert {t.kind for t in first} == {t.kind for t in suite.tasks("test")}  # all 10 types
    assert sorted(t.task_id for t in mixed.tasks("test")) == sorted(t.task_id for t in suite.tasks("test"))
    assert [t.task_id for t in mixed.tasks("test", 25)][:10] == [t.task_id for t in first]
    assert first[0].task_id == "dbbench-standard-0" and first[1].task_id == "dbbench-standard-17"


@pytest.mark.parametrize("answer,label,ok", [
    (' ["3"]', ["3"], True), (" [3.0]", ["3"], True), (' ["3.5"]', ["3.50"], True),
    (' ["b", "a"]', ["a", "b"], True), (' ["a"]', ["a", "b"], False), (" 7", ["7"], True),
    (' "ab"', ["a", "b"], True),  # a bare string is split into its characters, as the official list(eval(...))
    (" [[1], [2]]", ["x", "y"], False), ("", ["x"], False), (" [\"Chile\"]", ["chile"], False),
])
def test_answers_are_compared_as_the_official_checker_does(answer, label, ok):
    assert db.answer_matches(answer, label) is ok


def test_a_missing_data_dir_or_task_file_is_a_clear_error(tmp_path):
    with pytest.raises(ConfigError, match=r"benchmarks.db.options.data_dir: .*nowhere.*does not exist.*AgentBench"):
        check_suite(get_suite("agentbench_db", "suite", {"data_dir": str(tmp_path / "nowhere")}), "db")
    (tmp_path / "data" / "dbbench").mkdir(parents=True)
    good = {"description": "q", "type": ["INSERT"], "label": ["INSERT ..."],
            "table": {"table_name": "t", "table_info": {"columns": [{"name": "a"}], "rows": [["1"]]}}}
    (tmp_path / "data" / "dbbench" / "standard.jsonl").write_text(json.dumps({**good, "answer_md5": "x"}) + "\n"
                                                                   + json.dumps(good) + "\n")
    (tmp_path / "data" / "dbbench" / "dev.jsonl").write_text("")
    with pytest.raises(ConfigError, match=r"standard.jsonl:2: .*answer_md5"):
        check_suite(get_suite("agentbench_db", "suite", {"data_dir": str(tmp_path)}), "db")
    with pytest.raises(ConfigError, match=r"benchmarks.db.options.splits: 'bogus' is not a split"):
        get_suite("agentbench_db", "benchmarks.db.suite", {"data_dir": str(tmp_path), "splits": {"bogus": "dev"}})


def test_a_missing_server_is_a_clear_error(agentbench_dir, monkeypatch):
    monkeypatch.setenv("PATH", "/nonexistent")
    import shutil

    real = shutil.which
    monkeypatch.setattr(shutil, "which", lambda name, path=None: None if "mariadb" in name else real(name, path=path))
    with pytest.raises(ConfigError, match=r"`mariadb-install-db` not found.*apt-get install -y mariadb-server"):
        check_suite(get_suite("agentbench_db", "suite", {"data_dir": str(agentbench_dir)}), "db")


def test_the_server_goes_when_its_process_is_killed():
    """A rollout actor killed with SIGKILL leaves no mariadbd behind; the next server removes its directory."""
    code = ("import sys, time; from arm_ray.benchmarks.mariadb import Server; s = Server().start(); "
            "print(s.process.pid, s.root, flush=True); time.sleep(600)")
    child = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    pid, root = child.stdout.readline().split()
    os.kill(int(pid), 0)  # the server runs
    child.send_signal(signal.SIGKILL)
    child.wait()
    for _ in range(200):
        try:
            os.kill(int(pid), 0)
        except ProcessLookupError:
            break
        time.sleep(0.05)
    else:
        pytest.fail("mariadbd outlived the process that started it")
    assert (Path(root) / "data").is_dir()
    server = db.Server().start()
    try:
        assert not Path(root).exists() and server.root.is_dir()
    finally:
        server.stop()
    assert server.root is None


def test_gold_trajectories_export_as_calibration(agentbench_dir, tmp_path):
    from arm_ray.roles.parsers import find_spans
    from arm_ray.rollout.export import export

    out = tmp_path / "dbbench_dev.jsonl"
    written, total = export("agentbench_db", "dev", out, n=12, options={"data_dir": str(agentbench_dir)})
    records = [json.loads(line) for line in out.read_text().splitlines()]
    assert total == 12 and written == len(records) == 12
    for r in records:
        agent = [m["content"] for m in r["messages"] if m["role"] == "assistant"]
        assert r["benchmark"] == "dbbench" and agent[0] == "Ok." and not find_spans("dbbench", "action", agent[0])
        assert all(find_spans("dbbench", "action", a) for a in agent[1:])
