"""Worked examples in the system turn: the offline suites' one option, for base models too small to follow a
suite's format from its instructions alone.

    benchmarks.<b>.options: {demos: DIR/data/shell/train.jsonl, n_demos: 1}

`demos` is a JSONL file of solved episodes (`{"benchmark", "messages", "tools"}`, what a pool's
`data/<suite>/train.jsonl` holds); the first `n_demos` are written after the suite's instructions as plain
transcripts. The task, its reward and its oracle are unchanged: the option makes a suite easier to start, it
never moves a score by itself. Demos come from `train`, so calibration, dev and test stay disjoint from them.
"""

from __future__ import annotations

import json
from pathlib import Path

from arm_ray.errors import ConfigError
from arm_ray.world.base import Env, Start, StepResult, Suite, Task

HEADER = "\n\nExamples of solved tasks:"


def read_demos(path: str | Path, n: int, parser: str, where: str = "demos") -> list[dict]:
    """The first `n` episodes of a JSONL file, checked line by line (the error names the file and line)."""
    path = Path(path)
    if n < 1:
        raise ConfigError(f"n_demos: expected at least 1, got {n}")
    if not path.is_file():
        raise ConfigError(f"{where}: {path} is not a file (expected a JSONL file of solved episodes)")
    out = []
    with path.open(encoding="utf-8") as f:
        for line_no, line in enumerate(f, 1):
            if len(out) == n:
                break
            if not line.strip():
                continue
            try:
                rec = json.loads(line)
            except json.JSONDecodeError as e:
                raise ConfigError(f"{path}:{line_no}: not JSON ({e.msg})") from None
            msgs = rec.get("messages") if isinstance(rec, dict) else None
            if not isinstance(msgs, list) or not all(isinstance(m, dict) and isinstance(m.get("role"), str)
                                                     and isinstance(m.get("content"), str) for m in msgs):
                raise ConfigError(f"{path}:{line_no}: expected {{\"messages\": [{{\"role\", \"content\"}}, ...]}}")
            if rec.get("benchmark") not in (None, parser):
                raise ConfigError(f"{path}:{line_no}: a {rec['benchmark']!r} episode; this suite's are {parser!r}")
            out.append(rec)
    if len(out) < n:
        raise ConfigError(f"{path}: {len(out)} episodes, n_demos asks for {n}")
    return out


def transcript(messages: list[dict]) -> str:
    """An episode after its system turn, one `[role]` block per message."""
    return "\n\n".join(f"[{m['role']}]\n{m['content']}" for m in messages if m["role"] != "system")


class WithDemos(Env):
    """An environment whose opening system turn ends with the demos; everything else is the inner one's."""

    def __init__(self, inner: Env, text: str):
        self.inner, self.text, self.task = inner, text, inner.task

    @property
    def state(self) -> dict:
        return self.inner.state

    def reset(self) -> Start:
        start = self.inner.reset()
        msgs = [dict(m) for m in start.messages]
        if msgs and msgs[0]["role"] == "system":
            msgs[0]["content"] += self.text
        else:
            msgs.insert(0, {"role": "system", "content": self.text.lstrip()})
        return Start(msgs, start.tools)

    def step(self, action_text: str) -> StepResult:
        return self.inner.step(action_text)

    def reward(self) -> float:
        return self.inner.reward()

    def close(self) -> None:
        self.inner.close()

    def details(self) -> dict | None:
        return self.inner.details()


class WorldSuite(Suite):
    """An offline suite: `new_env` builds its environment; `make_env` adds the demos when the option is set."""

    path_options = ("demos",)

    def __init__(self, demos: str | None = None, n_demos: int = 1):
        self.demos = read_demos(demos, n_demos, self.parser) if demos is not None else []
        self.demo_text = HEADER + "".join(f"\n\n{transcript(d['messages'])}" if i == 0 else
                                          f"\n\n---\n\n{transcript(d['messages'])}"
                                          for i, d in enumerate(self.demos)) if self.demos else ""

    def new_env(self, task: Task) -> Env:
        raise NotImplementedError

    def make_env(self, task: Task) -> Env:
        env = self.new_env(task)
        return WithDemos(env, self.demo_text) if self.demos else env
