"""Loaders: both formats, three file types, errors that name the file and line."""

import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from arm_ray.errors import DataError
from arm_ray.roles.formats import load_trajectories, require_clean

OPENAI = {"benchmark": "tau_bench", "messages": [
    {"role": "user", "content": "hi"},
    {"role": "assistant", "content": None, "tool_calls": [{"type": "function", "function": {
        "name": "f", "arguments": "{\"a\": 1}"}}]},
    {"role": "tool", "content": "ok"}, {"role": "assistant", "content": "done"}]}
SHAREGPT = {"system": "sys  text ", "conversations": [
    {"from": "human", "value": "do it\n"}, {"from": "gpt", "value": "<answer>{\"app\": 1}</answer>"},
    {"from": "human", "value": "Observation: ok"}]}


def write_jsonl(path, records):
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in records))
    return path


def test_openai_and_sharegpt_jsonl(tmp_path):
    res = load_trajectories(write_jsonl(tmp_path / "a.jsonl", [OPENAI, SHAREGPT]), benchmark="officebench")
    assert not res.problems
    a, b = res.trajectories
    assert a.benchmark == "tau_bench"  # the record's own field wins
    assert a.messages[1]["content"] == "" and a.messages[1]["tool_calls"][0]["function"]["name"] == "f"
    assert b.benchmark == "officebench"
    assert [m["role"] for m in b.messages] == ["system", "user", "assistant", "user"]
    assert b.messages[0]["content"] == "sys  text " and b.messages[1]["content"] == "do it\n"  # exact text


def test_json_and_parquet(tmp_path):
    (tmp_path / "a.json").write_text(json.dumps([OPENAI, OPENAI]))
    assert len(load_trajectories(tmp_path / "a.json").trajectories) == 2
    table = pa.table({"benchmark": ["tau_bench"], "messages": [json.dumps(OPENAI["messages"])]})
    pq.write_table(table, tmp_path / "a.parquet")
    t = load_trajectories(tmp_path / "a.parquet").trajectories[0]
    assert t.messages[-1]["content"] == "done"


def test_bad_records_are_reported_with_line(tmp_path):
    bad = [OPENAI, "{not json", {"messages": [{"role": "robot", "content": "x"}]},
           {"conversations": [{"from": "human", "value": "only a question"}]}, {"foo": 1}]
    path = write_jsonl(tmp_path / "bad.jsonl", bad)
    res = load_trajectories(path)
    assert len(res.trajectories) == 1 and res.n_records == 5
    assert res.problems[0].startswith(f"{path}:2: not valid JSON")
    assert "messages[0].role: expected one of" in res.problems[1] and f"{path}:3" in res.problems[1]
    assert "no assistant turn" in res.problems[2]
    assert "expected a 'messages' list" in res.problems[3]
    with pytest.raises(DataError, match="4 of 5 records are malformed"):
        require_clean(res, path)
    warn = require_clean(res, path, allow_bad=True)
    assert "were dropped" in warn[0]


def test_parquet_row_is_named(tmp_path):
    pq.write_table(pa.table({"messages": ["[]"]}), tmp_path / "b.parquet")
    res = load_trajectories(tmp_path / "b.parquet")
    assert res.problems and "b.parquet#row0" in res.problems[0]


def test_sampling_is_seeded_and_keeps_order(tmp_path):
    recs = [{**OPENAI, "messages": OPENAI["messages"][:-1] + [{"role": "assistant", "content": str(i)}]}
            for i in range(20)]
    path = write_jsonl(tmp_path / "s.jsonl", recs)
    a = [t.messages[-1]["content"] for t in load_trajectories(path, sample=5, seed=3).trajectories]
    b = [t.messages[-1]["content"] for t in load_trajectories(path, sample=5, seed=3).trajectories]
    c = [t.messages[-1]["content"] for t in load_trajectories(path, sample=5, seed=4).trajectories]
    assert a == b and a != c and a == sorted(a, key=int)


def test_unknown_file_type(tmp_path):
    (tmp_path / "x.csv").write_text("a")
    with pytest.raises(DataError, match="expected .jsonl, .json or .parquet"):
        load_trajectories(tmp_path / "x.csv")
