"""The agent loop, shared by every way of generating text.

A policy maps a batch of open episodes (task, conversation so far, tools) to one
assistant text each, or None where the conversation no longer fits its context
(the episode then ends as `context`). The loop advances all open episodes one
step at a time, possibly of several suites at once, so a batching engine (vLLM)
sees every live episode together, and a one-at-a-time generator (transformers)
or the oracle plug in the same way. An environment that raises ends its own
episode as `error`; the others go on.
"""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Callable, Protocol

from arm_ray.world.base import Env, Suite, Task


@dataclass
class Turn:
    task: Task
    messages: list[dict]
    tools: list[dict] | None


class Policy(Protocol):
    def __call__(self, turns: list[Turn]) -> list[str | None]: ...


@dataclass
class Episode:
    suite: str
    split: str
    task_id: str
    kind: str
    reward: float = 0.0
    steps: int = 0
    invalid_actions: int = 0
    finish_reason: str = ""
    messages: list[dict] = field(default_factory=list)
    tools: list[dict] | None = None
    error: str | None = None

    @property
    def success(self) -> bool:
        return self.reward >= 1.0

    def record(self, model: str) -> dict:
        """A row of eval results (trajectory as JSON)."""
        return {"model": model, "suite": self.suite, "split": self.split, "task_id": self.task_id,
                "reward": float(self.reward), "success": self.success, "steps": self.steps,
                "invalid_actions": self.invalid_actions, "finish_reason": self.finish_reason,
                "trajectory": json.dumps({"messages": self.messages, "tools": self.tools, "error": self.error},
                                         ensure_ascii=False)}


def run_episodes(suite: Suite, tasks: list[Task], policy: Policy, split: str = "",
                 progress: Callable[[int], None] | None = None) -> list[Episode]:
    return run_mixed([(suite, t, split) for t in tasks], policy, progress)


def run_mixed(jobs: list[tuple[Suite, Task, str]], policy: Policy,
              progress: Callable[[int], None] | None = None, env_workers: int = 8) -> list[Episode]:
    """Episodes of (suite, task, split) jobs, all advanced together; results in job order.

    `env_workers`: threads stepping environments at once (each episode's own environment).
    """
    episodes = [Episode(suite.name, split, t.task_id, t.kind) for suite, t, split in jobs]
    envs: list[Env | None] = [None] * len(jobs)
    live = []
    for i, (suite, task, _) in enumerate(jobs):
        try:
            envs[i] = suite.make_env(task)
            start = envs[i].reset()
        except Exception as e:  # noqa: BLE001 - a broken task must not stop the run
            _end(episodes[i], envs[i], e)
            continue
        episodes[i].messages = list(start.messages)
        episodes[i].tools = start.tools
        live.append(i)
    pool = ThreadPoolExecutor(max_workers=env_workers) if env_workers > 1 else None
    try:
        while live:
            texts = policy([Turn(jobs[i][1], episodes[i].messages, episodes[i].tools) for i in live])
            # environments step concurrently: shell and SQL steps wait on sandboxes and databases, not the GIL
            stepped = list((pool.map if pool else map)(_step, [envs[i] for i in live], texts))
            still = []
            for i, text, (r, error) in zip(live, texts, stepped):
                ep, env = episodes[i], envs[i]
                if text is None:  # the conversation outgrew the model's context
                    ep.finish_reason = "context"
                    _score(ep, env)
                    continue
                ep.messages.append({"role": "assistant", "content": text})
                ep.steps += 1
                if error is not None:
                    _end(ep, env, error)
                    continue
                ep.messages.extend(r.messages)
                ep.invalid_actions += int(r.invalid)
                if r.done:
                    ep.finish_reason = r.finish_reason or "done"
                elif ep.steps >= jobs[i][0].max_steps:
                    ep.finish_reason = "limit"
                else:
                    still.append(i)
                    continue
                _score(ep, env)
            if progress:
                progress(len(live) - len(still))
            live = still
    finally:
        if pool:
            pool.shutdown()
    return episodes


def _step(env: Env, text: str | None):
    if text is None:
        return None, None
    try:
        return env.step(text), None
    except Exception as e:  # noqa: BLE001 - recorded on the episode by the loop
        return None, e


def _score(ep: Episode, env: Env) -> None:
    try:
        ep.reward = float(env.reward())
    except Exception as e:  # noqa: BLE001
        _end(ep, env, e)
        return
    _end(ep, env, None)


def _end(ep: Episode, env: Env | None, error: Exception | None) -> None:
    """Close the episode's environment; an error makes the episode a failure that records it."""
    if error is not None:
        ep.reward, ep.finish_reason, ep.error = 0.0, "error", f"{type(error).__name__}: {error}"
    if env is not None:
        try:
            env.close()
        except Exception:  # noqa: BLE001 - cleanup must not end the run
            pass


class OraclePolicy:
    """The suite's own solver, as a policy: it reads the conversation like a model would."""

    def __init__(self, suite: Suite):
        self.suite = suite

    def __call__(self, turns: list[Turn]) -> list[str]:
        return [self.suite.oracle_step(t.task, t.messages) for t in turns]


def training_record(ep: Episode, parser: str) -> dict:
    """An episode as an OpenAI-messages record the roles layer loads (the benchmark is the parser name)."""
    rec = {"benchmark": parser, "messages": ep.messages}
    if ep.tools:
        rec["tools"] = ep.tools
    return rec
