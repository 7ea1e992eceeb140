"""The agent loop, shared by every way of generating text.

A policy writes the assistant's next text for open episodes (task, conversation
so far, tools), or None where the conversation no longer fits its context (the
episode then ends as `context`). Two kinds plug in:

- a batch policy, `policy(turns) -> texts` (`policies.py`: the oracle, transformers): the loop
  advances all open episodes one step at a time, possibly of several suites;
- a streaming policy (`StreamingPolicy`, `vllm_engine.py`): the loop submits an
  episode's turn as soon as its environment has stepped and polls for finished
  replies, so an episode never waits for the longest reply of a batch.

An episode's text depends only on its own conversation (and, when sampling,
its own per-request seed), not on which other episodes share a batch, so the
timing of a streaming run does not change its episodes (up to floating-point
differences between batch shapes; the toy demo's 2,048 sampled episodes came
out identical in two runs). An environment that raises ends its own episode as
`error`; the others go on.
"""

from __future__ import annotations

import json
import threading
import time
from collections import Counter
from concurrent.futures import (
    ALL_COMPLETED,
    FIRST_COMPLETED,
    Future,
    ThreadPoolExecutor,
    wait,
)
from dataclasses import dataclass, field
from typing import Callable, Protocol, runtime_checkable

from arm_ray.world.base import Env, Suite, Task


@dataclass
class Turn:
    task: Task
    messages: list[dict]  # what the model is shown (Env.view of the conversation)
    tools: list[dict] | None
    history: list[dict] | None = None  # the whole conversation, where the model is shown less of it


class Policy(Protocol):
    def __call__(self, turns: list[Turn]) -> list[str | None]: ...


@runtime_checkable
class StreamingPolicy(Protocol):
    def submit(self, key: int, turn: Turn) -> None:
        """Start generating `turn`'s reply; `key` comes back with it from `poll`."""

    def poll(self) -> list[tuple[int, str | None]]:
        """Advance generation a little; the (key, text) pairs that finished meanwhile."""

    def pending(self) -> int:
        """Submitted turns not yet returned by `poll`."""


class _Batched:
    """A batch policy seen as a streaming one: `poll` answers every submitted turn in one call."""

    def __init__(self, policy: Policy):
        self.policy, self.queue = policy, []

    def submit(self, key: int, turn: Turn) -> None:
        self.queue.append((key, turn))

    def poll(self) -> list[tuple[int, str | None]]:
        queue, self.queue = sorted(self.queue, key=lambda q: q[0]), []
        return list(zip([k for k, _ in queue], self.policy([t for _, t in queue])))

    def pending(self) -> int:
        return len(self.queue)


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
    details: dict | None = None  # the benchmark's own record of the episode (Env.details)

    @property
    def success(self) -> bool:
        return self.reward >= 1.0

    def record(self, model: str) -> dict:
        """A row of eval results (trajectory as JSON)."""
        return {"model": model, "suite": self.suite, "split": self.split, "task_id": self.task_id,
                "reward": float(self.reward), "success": self.success, "steps": self.steps,
                "invalid_actions": self.invalid_actions, "finish_reason": self.finish_reason,
                "trajectory": json.dumps({"messages": self.messages, "tools": self.tools, "error": self.error,
                                          **({"details": self.details} if self.details else {})},
                                         ensure_ascii=False)}


def run_episodes(suite: Suite, tasks: list[Task], policy: Policy | StreamingPolicy, split: str = "",
                 progress: Callable[[int], None] | None = None) -> list[Episode]:
    return run_mixed([(suite, t, split) for t in tasks], policy, progress)


def run_mixed(jobs: list[tuple[Suite, Task, str]], policy: Policy | StreamingPolicy,
              progress: Callable[[int], None] | None = None, env_workers: int = 8,
              clock: Counter | None = None) -> list[Episode]:
    """Episodes of (suite, task, split) jobs, all advanced together; results in job order.

    `env_workers`: threads stepping environments at once (each episode's own
    environment); shell and SQL steps wait on sandboxes and databases, not the GIL.
    `clock` gets seconds of: reset and env_step (resets' and steps' own time, summed over the threads), env_wait
    (the loop blocked on environments), scoring (rewards and closing), loop (the whole call).
    """
    clock = Counter() if clock is None else clock
    began = time.perf_counter()
    episodes = [Episode(suite.name, split, t.task_id, t.kind) for suite, t, split in jobs]
    envs: list[Env | None] = [None] * len(jobs)
    stream = policy if isinstance(policy, StreamingPolicy) else _Batched(policy)
    # a batch policy gets every open episode at once, so its batches do not depend on timing
    together = isinstance(stream, _Batched)

    def turn(i: int) -> Turn:
        shown = envs[i].view(episodes[i].messages)
        return Turn(jobs[i][1], shown, episodes[i].tools, None if shown is episodes[i].messages else
                    episodes[i].messages)

    pool = ThreadPoolExecutor(max_workers=max(1, env_workers))
    # resets run in the pool too (the OS suite starts a sandbox per episode, ~0.2 s each): a streaming policy gets
    # each episode's first turn as soon as its environment is up, while the engine already decodes others
    resetting: dict[Future, int] = {pool.submit(_reset, suite, task, clock): i
                                    for i, (suite, task, _) in enumerate(jobs)}
    stepping: dict[Future, int] = {}
    n_open = len(jobs)
    try:
        while n_open:
            ended = 0
            if not stream.pending() and (stepping or resetting):  # nothing to decode: wait for an environment
                t0 = time.perf_counter()
                # a batch policy waits for all of them, so its batches do not depend on timing
                wait([*resetting, *stepping], return_when=ALL_COMPLETED if together else FIRST_COMPLETED)
                clock["env_wait"] += time.perf_counter() - t0
            for f in sorted((f for f in resetting if f.done()), key=resetting.get):
                i = resetting.pop(f)
                envs[i], start, error = f.result()
                if error is not None:  # a broken task must not stop the run
                    _end(episodes[i], envs[i], error)
                    ended += 1
                    continue
                episodes[i].messages = list(start.messages)
                episodes[i].tools = start.tools
                stream.submit(i, turn(i))
            for f in sorted((f for f in stepping if f.done()), key=stepping.get):
                i = stepping.pop(f)
                if _advance(episodes[i], envs[i], f.result(), jobs[i][0].max_steps, clock):
                    stream.submit(i, turn(i))
                else:
                    ended += 1
            for i, text in stream.poll() if stream.pending() else []:
                if text is None:  # the conversation outgrew the model's context
                    episodes[i].finish_reason = "context"
                    _score(episodes[i], envs[i], clock)
                    ended += 1
                    continue
                episodes[i].messages.append({"role": "assistant", "content": text})
                episodes[i].steps += 1
                stepping[pool.submit(_step, envs[i], text, clock)] = i
            if not stepping and not resetting and not stream.pending() and n_open > ended:
                raise RuntimeError(f"{type(policy).__name__} dropped {n_open - ended} submitted turns")
            n_open -= ended
            if progress and ended:
                progress(ended)
    finally:
        pool.shutdown(cancel_futures=True)
        for f in resetting:  # environments started but never handed to the loop (it stopped on an error)
            env = None if f.cancelled() else f.result()[0]
            if env is not None:
                _end(Episode("", "", "", ""), env, None)
        clock["loop"] += time.perf_counter() - began
    return episodes


def _reset(suite: Suite, task: Task, clock: Counter):
    """(environment, its start, None), or (the environment if one was made, None, the error)."""
    t0 = time.perf_counter()
    env = None
    try:
        env = suite.make_env(task)
        return env, env.reset(), None
    except Exception as e:  # noqa: BLE001 - recorded on the episode by the loop
        return env, None, e
    finally:
        _tick(clock, "reset", t0)


def _advance(ep: Episode, env: Env, stepped, max_steps: int, clock: Counter) -> bool:
    """Record an environment step on the episode; True while the episode goes on."""
    r, error = stepped
    if error is not None:
        _end(ep, env, error)
        return False
    ep.messages.extend(r.messages)
    ep.invalid_actions += int(r.invalid)
    if r.done:
        ep.finish_reason = r.finish_reason or "done"
    elif ep.steps >= max_steps:
        ep.finish_reason = "limit"
    else:
        return True
    _score(ep, env, clock)
    return False


def _step(env: Env, text: str, clock: Counter):
    t0 = time.perf_counter()
    try:
        return env.step(text), None
    except Exception as e:  # noqa: BLE001 - recorded on the episode by the loop
        return None, e
    finally:
        _tick(clock, "env_step", t0)


_CLOCK = threading.Lock()


def _tick(clock: Counter, what: str, since: float) -> None:
    """Add the time since `since` to clock[what], from any of the environment threads."""
    with _CLOCK:
        clock[what] += time.perf_counter() - since


def _score(ep: Episode, env: Env, clock: Counter) -> None:
    t0 = time.perf_counter()
    try:
        ep.reward = float(env.reward())
    except Exception as e:  # noqa: BLE001
        _end(ep, env, e)
    else:
        _end(ep, env, None)
    finally:
        clock["scoring"] += time.perf_counter() - t0


def _end(ep: Episode, env: Env | None, error: Exception | None) -> None:
    """Close the episode's environment; an error makes the episode a failure that records it."""
    if error is not None:
        ep.reward, ep.finish_reason, ep.error = 0.0, "error", f"{type(error).__name__}: {error}"
    elif env is not None:
        try:
            ep.details = env.details()
        except Exception as e:  # noqa: BLE001 - a record the benchmark could not write is an error of the episode
            ep.reward, ep.finish_reason, ep.error = 0.0, "error", f"{type(e).__name__}: {e}"
    if env is not None:
        try:
            env.close()
        except Exception:  # noqa: BLE001 - cleanup must not end the run
            pass


def training_record(ep: Episode, parser: str) -> dict:
    """An episode as an OpenAI-messages record the roles layer loads (the benchmark is the parser name)."""
    rec = {"benchmark": parser, "messages": ep.messages}
    if ep.tools:
        rec["tools"] = ep.tools
    return rec
