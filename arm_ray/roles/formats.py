"""Trajectory files: OpenAI-style messages and ShareGPT, from JSONL, JSON or Parquet.

Every record becomes a `Trajectory` holding OpenAI-style messages. A malformed
record is reported with its file and line (or Parquet row) and what was
expected; nothing is dropped without saying so.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

from arm_ray.errors import DataError

MESSAGE_ROLES = ("system", "user", "assistant", "tool")
# ShareGPT speaker names -> message roles. Tool observations arrive as `human`
# turns in the SIMIA data; they stay user turns (roles are found in the text).
SHAREGPT_ROLES = {"system": "system", "human": "user", "user": "user", "gpt": "assistant", "assistant": "assistant"}


@dataclass
class Trajectory:
    messages: list[dict[str, Any]]
    benchmark: str | None = None
    tools: list[dict[str, Any]] | None = None
    source: str = ""  # "file:line" or "file#row", for error messages


@dataclass
class LoadResult:
    trajectories: list[Trajectory] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)  # one line per rejected record
    n_records: int = 0


def iter_records(path: str | Path) -> Iterator[tuple[str, Any]]:
    """Yield (locator, raw record) for every record in a JSONL, JSON or Parquet file."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: no such file")
    suffix = path.suffix.lower()
    if suffix == ".jsonl":
        with path.open(encoding="utf-8") as f:
            for i, line in enumerate(f, start=1):
                if not line.strip():
                    continue
                try:
                    yield f"{path}:{i}", json.loads(line)
                except json.JSONDecodeError as e:
                    yield f"{path}:{i}", DataError(f"not valid JSON ({e.msg} at column {e.colno})")
    elif suffix == ".json":
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as e:
            raise DataError(f"{path}:{e.lineno}: not valid JSON ({e.msg})") from None
        records = data if isinstance(data, list) else [data]
        for i, rec in enumerate(records):
            yield f"{path}[{i}]", rec
    elif suffix == ".parquet":
        import pyarrow.parquet as pq

        try:
            table = pq.read_table(path)
        except Exception as e:  # pyarrow raises several types for corrupt files
            raise DataError(f"{path}: not a readable Parquet file ({e})") from None
        for i, rec in enumerate(table.to_pylist()):
            yield f"{path}#row{i}", rec
    else:
        raise DataError(f"{path}: unknown trajectory file type {suffix!r}; expected .jsonl, .json or .parquet")


def _maybe_json(value: Any, what: str) -> Any:
    # Parquet files often store nested fields as JSON strings.
    if isinstance(value, str):
        try:
            return json.loads(value)
        except json.JSONDecodeError:
            raise DataError(f"{what}: expected a list or a JSON string holding one") from None
    return value


def _check_tool_calls(calls: Any, where: str) -> list[dict]:
    calls = _maybe_json(calls, f"{where}.tool_calls")
    if not isinstance(calls, list):
        raise DataError(f"{where}.tool_calls: expected a list")
    out = []
    for c, call in enumerate(calls):
        fn = call.get("function", call) if isinstance(call, dict) else None
        if not isinstance(fn, dict) or not isinstance(fn.get("name"), str):
            raise DataError(f"{where}.tool_calls[{c}]: expected {{'function': {{'name': str, 'arguments': ...}}}}")
        args = fn.get("arguments", {})
        if not isinstance(args, (str, dict)):
            raise DataError(f"{where}.tool_calls[{c}].function.arguments: expected a JSON string or an object")
        out.append({**({k: v for k, v in call.items() if k != "function"}), "type": "function",
                    "function": {"name": fn["name"], "arguments": args}})
    return out


def _openai_messages(rec: dict) -> list[dict]:
    msgs = _maybe_json(rec["messages"], "messages")
    if not isinstance(msgs, list) or not msgs:
        raise DataError("messages: expected a non-empty list")
    out = []
    for m, msg in enumerate(msgs):
        where = f"messages[{m}]"
        if not isinstance(msg, dict):
            raise DataError(f"{where}: expected an object with 'role' and 'content'")
        role = msg.get("role")
        if role not in MESSAGE_ROLES:
            raise DataError(f"{where}.role: expected one of {', '.join(MESSAGE_ROLES)}, got {role!r}")
        content = msg.get("content")
        calls = msg.get("tool_calls")
        clean: dict[str, Any] = {"role": role}
        if calls:
            if role != "assistant":
                raise DataError(f"{where}.tool_calls: only assistant messages carry tool calls")
            clean["tool_calls"] = _check_tool_calls(calls, where)
        if content is None:
            if not calls:
                raise DataError(f"{where}.content: expected a string")
            content = ""
        if not isinstance(content, str):
            raise DataError(f"{where}.content: expected a string, got {type(content).__name__}")
        clean["content"] = content
        for key in ("name", "tool_call_id", "reasoning_content"):
            if isinstance(msg.get(key), str):
                clean[key] = msg[key]
        out.append(clean)
    return out


def _sharegpt_messages(rec: dict) -> list[dict]:
    turns = _maybe_json(rec["conversations"], "conversations")
    if not isinstance(turns, list) or not turns:
        raise DataError("conversations: expected a non-empty list")
    out = []
    system = rec.get("system")
    if system is not None:
        if not isinstance(system, str):
            raise DataError("system: expected a string")
        if system:
            out.append({"role": "system", "content": system})
    for t, turn in enumerate(turns):
        where = f"conversations[{t}]"
        if not isinstance(turn, dict):
            raise DataError(f"{where}: expected an object with 'from' and 'value'")
        speaker = turn.get("from")
        if speaker not in SHAREGPT_ROLES:
            raise DataError(f"{where}.from: expected one of {', '.join(SHAREGPT_ROLES)}, got {speaker!r}")
        value = turn.get("value")
        if not isinstance(value, str):
            raise DataError(f"{where}.value: expected a string")
        out.append({"role": SHAREGPT_ROLES[speaker], "content": value})  # text kept as is, character for character
    return out


def parse_record(rec: Any, source: str, benchmark: str | None = None) -> Trajectory:
    """One raw record -> Trajectory. The record's own `benchmark` wins over the file's."""
    if isinstance(rec, Exception):
        raise rec
    if not isinstance(rec, dict):
        raise DataError(f"expected a JSON object, got {type(rec).__name__}")
    if "messages" in rec and rec["messages"] is not None:
        messages = _openai_messages(rec)
    elif "conversations" in rec and rec["conversations"] is not None:
        messages = _sharegpt_messages(rec)
    else:
        raise DataError("expected a 'messages' list (OpenAI format) or a 'conversations' list (ShareGPT format)")
    if not any(m["role"] == "assistant" for m in messages):
        raise DataError("no assistant turn: nothing to trace")
    tools = rec.get("tools")
    if tools is not None:
        tools = _maybe_json(tools, "tools")
        if not isinstance(tools, list) or not all(isinstance(t, dict) for t in tools):
            raise DataError("tools: expected a list of function schemas")
        tools = tools or None
    own = rec.get("benchmark")
    if own is not None and not isinstance(own, str):
        raise DataError("benchmark: expected a string")
    return Trajectory(messages=messages, benchmark=own or benchmark, tools=tools, source=source)


def load_trajectories(path: str | Path, benchmark: str | None = None, sample: int | None = None,
                      seed: int = 0) -> LoadResult:
    """Load every record of a file; bad records are collected in `problems`, never dropped silently.

    `sample`: keep N records chosen with `seed` (the paper's N trajectories per
    dataset), in file order, so the same seed always gives the same subset.
    """
    result = LoadResult()
    for source, rec in iter_records(path):
        result.n_records += 1
        try:
            result.trajectories.append(parse_record(rec, source, benchmark))
        except DataError as e:
            result.problems.append(f"{source}: {e}")
    if sample is not None and sample < len(result.trajectories):
        keep = sorted(random.Random(seed).sample(range(len(result.trajectories)), sample))
        result.trajectories = [result.trajectories[i] for i in keep]
    return result


def require_clean(result: LoadResult, path: str | Path, allow_bad: bool = False) -> list[str]:
    """Raise on bad records (the default), or return the warning lines that say what was dropped."""
    if not result.problems:
        return []
    head = f"{path}: {len(result.problems)} of {result.n_records} records are malformed"
    listed = "\n  ".join(result.problems[:10]) + ("\n  ..." if len(result.problems) > 10 else "")
    if not allow_bad:
        raise DataError(f"{head}:\n  {listed}")
    return [f"{head} and were dropped:\n  {listed}"]
