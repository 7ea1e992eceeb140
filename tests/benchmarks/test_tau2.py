"""τ²-bench suites: τ²'s own tasks, tools, database and evaluator through our agent loop and parser path."""

import json
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest

pytest.importorskip("tau2")

from arm_ray.benchmarks.tau2_data import CopyOnRead  # noqa: E402
from arm_ray.benchmarks.tau2_env import parse_reply  # noqa: E402
from arm_ray.benchmarks.tau2_gold import GoldWithoutWrite  # noqa: E402
from arm_ray.errors import ConfigError  # noqa: E402
from arm_ray.evaluation.metrics import pass_hat_k, summarize  # noqa: E402
from arm_ray.rollout.agent import run_episodes  # noqa: E402
from arm_ray.rollout.policies import OraclePolicy  # noqa: E402
from arm_ray.rollout.user_model import serve_users  # noqa: E402
from arm_ray.suites import get_suite  # noqa: E402

# the full counts (all 114 retail and 50 airline tasks) are printed by scripts/bench_tau2.py
SAMPLE = {"tau2_retail": 12, "tau2_airline": 6}


@pytest.fixture(scope="module")
def suites():
    return {name: get_suite(name) for name in SAMPLE}


def gold_tasks(suite, n):
    return suite.tasks("test", n)


@pytest.mark.parametrize("name", list(SAMPLE))
def test_gold_replay_scores_one_and_leaves_the_shared_database_alone(suites, name):
    s = suites[name]
    before = s.environment().get_db_hash()
    eps = run_episodes(s, gold_tasks(s, SAMPLE[name]), OraclePolicy(s), "test")
    assert [e.reward for e in eps] == [1.0] * len(eps), [(e.task_id, e.finish_reason, e.error) for e in eps]
    assert {e.finish_reason for e in eps} == {"user_stop"} and sum(e.invalid_actions for e in eps) == 0
    assert s.environment().get_db_hash() == before  # copy-on-read never wrote a shared record


@pytest.mark.parametrize("name", list(SAMPLE))
def test_copy_on_read_database_ends_where_a_freshly_loaded_one_does(suites, name):
    from tau2.registry import registry

    s = suites[name]
    for task in gold_tasks(s, SAMPLE[name]):
        ours, fresh = s.environment(), registry.get_env_constructor(s.domain)()
        for a in s.gold_actions(task):
            assert ours.get_response(_call(a)).content == fresh.get_response(_call(a)).content
        assert ours.get_db_hash() == fresh.get_db_hash(), task.task_id


def _call(action):
    from tau2.data_model.message import ToolCall

    return ToolCall(id="x", name=action.name, arguments=action.arguments)


@pytest.mark.parametrize("name", list(SAMPLE))
def test_dropping_a_writing_action_scores_zero(suites, name):
    s = suites[name]
    tasks = [t for t in gold_tasks(s, SAMPLE[name]) if s.last_effective_write(t) is not None]
    assert len(tasks) >= SAMPLE[name] // 2
    eps = run_episodes(s, tasks, GoldWithoutWrite(s), "test")
    assert [e.reward for e in eps] == [0.0] * len(eps)
    assert all(e.finish_reason == "user_stop" for e in eps)


def test_bad_replies_become_tau2_error_messages_and_invalid_actions(suites):
    s = suites["tau2_retail"]
    replies = ['<tool_call>{"name": "no_such_tool", "arguments": {}}</tool_call>',
               "<tool_call>{not json</tool_call>",
               '<tool_call>{"name": "get_order_details", "arguments": {"order": "#W1"}}</tool_call>',
               '<tool_call>{"name": "get_order_details", "arguments": "#W1"}</tool_call>',
               ""]

    def policy(turns):
        return [replies[sum(m["role"] == "assistant" for m in t.messages) - 1] for t in turns]

    [ep] = run_episodes(s, s.tasks("test", 1), policy, "test")
    tools = [m["content"] for m in ep.messages if m["role"] == "tool"]
    assert len(tools) == 4 and all(c.startswith("Error:") for c in tools)
    assert "no_such_tool" in tools[0] and "unexpected keyword argument 'order'" in tools[2]
    # the empty reply is τ²'s agent error: the episode ends there, scored 0 by τ²'s rule
    assert ep.finish_reason == "agent_error" and ep.reward == 0.0 and ep.error is None
    assert ep.invalid_actions == 5
    sim = json.loads(ep.record("m")["trajectory"])["details"]["tau2"]
    assert sim["termination_reason"] == "agent_error" and sim["reward_info"]["reward"] == 0.0


def test_parse_reply():
    calls, text, invalid = parse_reply('<think>hm</think>\n<tool_call>\n{"name": "a", "arguments": {"x": 1}}\n'
                                       '</tool_call>\n<tool_call>{"name": "b", "arguments": {}}</tool_call>', 3)
    assert [(c["id"], c["name"], c["arguments"]) for c in calls] == [("call_3_0", "a", {"x": 1}),
                                                                    ("call_3_1", "b", {})]
    assert text == "" and not invalid
    assert parse_reply("<think>plan</think> Your order is cancelled.", 0) == (None, "Your order is cancelled.", False)
    assert parse_reply("   ", 0) == (None, "", True)


def test_copy_on_read_copies_a_record_only_when_fetched_by_key():
    from pydantic import BaseModel

    class Rec(BaseModel):
        v: list[int]

    base = {"a": Rec(v=[1]), "b": Rec(v=[2])}
    t = CopyOnRead(base)
    t["a"].v.append(9)
    assert base["a"].v == [1] and dict.__getitem__(t, "a").v == [1, 9]
    assert dict.__getitem__(t, "b") is base["b"]  # untouched records stay shared
    t["c"] = Rec(v=[3])
    assert t.get("c").v == [3] and "c" not in base


def test_pass_hat_k_by_hand():
    rows = [{"task_id": f"t{i}#{j}", "reward": r} for i, rs in enumerate([[1, 1, 0], [1, 1, 1], [0, 0, 0]])
            for j, r in enumerate(rs)]
    # task 0: c=2 of n=3 -> pass^1 2/3, pass^2 1/3, pass^3 0; task 1: 1, 1, 1; task 2: 0
    got = pass_hat_k(rows)
    assert got == pytest.approx({"1": (2 / 3 + 1) / 3, "2": (1 / 3 + 1) / 3, "3": 1 / 3})
    assert pass_hat_k([{"task_id": "x", "reward": 1.0}, {"task_id": "y", "reward": 0.0}]) == {"1": 0.5}


def test_trials_give_pass_k_and_tau2_results_file(tmp_path):
    from tau2.data_model.simulation import Results

    s = get_suite("tau2_retail", options={"trials": 2})
    tasks = s.tasks("test", 3)
    assert [t.task_id.split("#")[1] for t in tasks] == ["0", "1"] * 3
    eps = run_episodes(s, tasks, OraclePolicy(s), "test")
    rows = [{**e.record("gold"), "benchmark": "tau"} for e in eps]
    assert summarize(rows, "test")["gold"]["tau"]["pass^k"] == {"1": 1.0, "2": 1.0}
    s.write_results(rows, tmp_path / "gold.tau.json", "gold")
    res = Results.load(tmp_path / "gold.tau.json")
    assert len(res.simulations) == 6 and len(res.tasks) == 3
    assert all(sim.reward_info.reward == 1.0 for sim in res.simulations)
    assert {sim.trial for sim in res.simulations} == {0, 1}


def test_options_are_checked_with_the_field_named():
    with pytest.raises(ConfigError, match=r"benchmarks\.tau\.options\.user: .*'robot'"):
        get_suite("tau2_retail", "benchmarks.tau.suite", {"user": {"kind": "robot"}})
    with pytest.raises(ConfigError, match=r"benchmarks\.tau\.options\.trials: .*greater than or equal to 1"):
        get_suite("tau2_retail", "benchmarks.tau.suite", {"trials": 0})
    with pytest.raises(ConfigError, match=r"benchmarks\.tau\.options\.splits: 'holdout' is not a split"):
        get_suite("tau2_retail", "benchmarks.tau.suite", {"splits": {"holdout": "test"}})
    with pytest.raises(ConfigError, match=r"benchmarks\.r\.options\.trials: suite 'retail' has no option 'trials' \(its options: demos, n_demos\)"):
        get_suite("retail", "benchmarks.r.suite", {"trials": 2})
    with pytest.raises(ValueError, match="no task split 'dev'"):
        get_suite("tau2_retail", options={"splits": {"test": "dev"}}).tasks("test")


def test_a_user_endpoint_that_is_down_fails_before_any_rollout():
    import socket

    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    s = get_suite("tau2_retail", options={"user": {"kind": "endpoint", "base_url": f"http://127.0.0.1:{port}/v1",
                                                   "model": "m"}})
    with pytest.raises(ConfigError, match=rf"options.user: endpoint http://127.0.0.1:{port}/v1 does not answer"):
        s.check()


class _ChatServer(BaseHTTPRequestHandler):
    """An OpenAI-compatible endpoint (a stand-in for a hosted user model): confirms, then ends the chat."""

    seen: list = []

    def do_GET(self):  # noqa: N802
        self._send({"object": "list", "data": [{"id": "user-model", "object": "model"}]})

    def do_POST(self):  # noqa: N802
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        _ChatServer.seen.append(body)
        turns = sum(m["role"] == "assistant" for m in body["messages"])
        text = "I want to return an item." if turns == 0 else "Thanks. ###STOP###"
        self._send({"id": "x", "object": "chat.completion", "created": 0, "model": body["model"],
                    "choices": [{"index": 0, "finish_reason": "stop",
                                 "message": {"role": "assistant", "content": text}}],
                    "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2}})

    def _send(self, obj):
        data = json.dumps(obj).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass


def test_endpoint_user_is_tau2s_own_simulator_over_http(monkeypatch):
    server = HTTPServer(("127.0.0.1", 0), _ChatServer)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    monkeypatch.setenv("ARM_TEST_KEY", "sk-test")
    try:
        url = f"http://127.0.0.1:{server.server_port}/v1"
        s = get_suite("tau2_retail", options={"user": {"kind": "endpoint", "base_url": url, "model": "user-model",
                                                       "api_key_env": "ARM_TEST_KEY"}})
        s.check()
        assert s.comparable
        [ep] = run_episodes(s, s.tasks("test", 1), lambda turns: ["Could you tell me more?"] * len(turns), "test")
    finally:
        server.shutdown()
    assert ep.finish_reason == "user_stop" and ep.error is None
    users = [m["content"] for m in ep.messages if m["role"] == "user"]
    assert users == ["I want to return an item.", "Thanks. ###STOP###"]
    # τ²'s user prompt (its guidelines and the task's scenario), sent with the roles flipped
    first = _ChatServer.seen[0]["messages"]
    assert first[0]["role"] == "system" and "<scenario>" in first[0]["content"]
    assert first[1] == {"role": "user", "content": "Hi! How can I help you today?"}


def test_engine_user_replies_from_a_local_model(talkative_model):
    s = get_suite("tau2_retail", options={"user": {"kind": "engine", "path": str(talkative_model),
                                                   "backend": "transformers", "max_new_tokens": 6}, "max_steps": 6})
    with serve_users([s]) as served:
        assert [m.spec["path"] for m in served] == [str(talkative_model)]
        eps = run_episodes(s, s.tasks("test", 2), lambda turns: ["Hello, how can I help?"] * len(turns), "test")
    for ep in eps:  # a random model never says ###STOP###: τ²'s step limit ends the episode, scored 0
        assert ep.error is None and ep.finish_reason == "max_steps" and ep.reward == 0.0, ep.error
        roles = [m["role"] for m in ep.messages]
        assert roles[0] == "system" and roles.count("user") >= 2
        assert all(r == ("assistant", "user")[i % 2] for i, r in enumerate(roles[1:]))  # τ²'s turn order
        assert all(m["content"] for m in ep.messages if m["role"] == "user")


def test_an_engine_user_that_writes_nothing_ends_its_episode_as_an_error(long_pool):
    s = get_suite("tau2_retail", options={"user": {"kind": "engine", "path": str(long_pool / "base"),
                                                   "backend": "transformers", "max_new_tokens": 4}})
    with serve_users([s]):
        [ep] = run_episodes(s, s.tasks("test", 1), lambda turns: ["Hello?"] * len(turns), "test")
    assert ep.finish_reason == "error" and "the user model wrote an empty reply" in ep.error


def test_an_engine_user_without_a_served_model_is_a_clear_error(long_pool):
    """The suite never starts a model itself: without the rollout side's `serve_users` it says so."""
    s = get_suite("tau2_retail", options={"user": {"kind": "engine", "path": str(long_pool / "base")}})
    assert s.user_model()["path"] == str(long_pool / "base") and s.user_model()["backend"] == "vllm"
    [ep] = run_episodes(s, s.tasks("test", 1), lambda turns: ["Hello?"] * len(turns), "test")
    assert ep.finish_reason == "error" and "served by the rollout side" in ep.error


def test_export_gold_trajectories_as_calibration(tmp_path, long_pool):
    from transformers import AutoTokenizer

    from arm_ray.roles.formats import load_trajectories
    from arm_ray.roles.spans import TrajectoryEncoder
    from arm_ray.rollout.export import export

    out = tmp_path / "cal.jsonl"
    assert export("tau2_retail", "train", out, n=3, benchmark="tau_bench") == (3, 3)
    loaded = load_trajectories(str(out), None, None, 0)
    assert len(loaded.trajectories) == 3
    enc = TrajectoryEncoder(AutoTokenizer.from_pretrained(long_pool / "base"), "token", 32768)
    encoded = enc.encode(loaded.trajectories, {"tau_bench": ["tool_call"]}, {"tau_bench": "tau_bench"})
    # every gold action is a traced tool_call span
    for e, t in zip(encoded, loaded.trajectories):
        calls = sum("<tool_call>" in m["content"] for m in t.messages if m["role"] == "assistant")
        assert calls >= 1 and len([x for x in e.spans if x.role == "tool_call"]) == calls
        assert len(e.positions["tool_call"]) > 0
