"""What every suite provides: seeded, disjoint task splits; an environment; an oracle.

A suite draws one deterministic stream of distinct tasks from its seed and cuts
it into splits in a fixed order (test, dev, calibration, then train), so the
splits never share a task and a split's first n tasks never change when n grows.
"""

from __future__ import annotations

import itertools
import random
from dataclasses import dataclass, field
from typing import Any

SPLITS = ("test", "dev", "calibration", "train")
TRIAL = "#"  # a task run several times (τ²'s `trials`) has ids `<task id>#<trial>`
# tasks reserved per split before train; train takes the rest of the stream
SPLIT_SIZE = {"test": 200, "dev": 200, "calibration": 200}


def check_split(split: str) -> None:
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; expected one of {SPLITS}")


def split_map(splits: dict[str, str], defaults: dict[str, str]) -> dict[str, str]:
    """A suite option mapping our splits to a benchmark's own, over its defaults; an unknown split is a ValueError."""
    for ours in splits:
        if ours not in SPLITS:
            raise ValueError(f"{ours!r} is not a split ({', '.join(SPLITS)})")
    return {**defaults, **splits}


def round_robin(items: list, key) -> list:
    """Items of each `key` in turn (keys in order of first appearance), each key's items in their order."""
    groups: dict = {}
    for item in items:
        groups.setdefault(key(item), []).append(item)
    rounds = itertools.zip_longest(*groups.values())
    return [x for r in rounds for x in r if x is not None]


def task_of(task_id: str) -> str:
    """The task an episode's id belongs to (its own id when the task runs once)."""
    return task_id.split(TRIAL)[0]


def assistant_turns(messages: list[dict]) -> int:
    """How many actions the agent has taken so far (an oracle's position in its plan)."""
    return sum(m["role"] == "assistant" for m in messages)


@dataclass
class Task:
    suite: str
    task_id: str
    kind: str  # the task family (e.g. "cancel", "2-app")
    data: dict[str, Any]  # everything the environment and the oracle need


@dataclass
class StepResult:
    messages: list[dict]  # what the world says back (tool results, observations, the user's reply)
    done: bool = False
    invalid: bool = False
    finish_reason: str | None = None  # why the episode ended, when done


@dataclass
class Start:
    messages: list[dict]  # system + first user turn
    tools: list[dict] | None = None


@dataclass
class Env:
    """One episode's world. `reset` returns the opening turns; `step` takes the model's text."""

    task: Task
    state: dict = field(default_factory=dict)

    def reset(self) -> Start:
        raise NotImplementedError

    def step(self, action_text: str) -> StepResult:
        raise NotImplementedError

    def reward(self) -> float:
        raise NotImplementedError

    def close(self) -> None:
        pass

    def view(self, messages: list[dict]) -> list[dict]:
        """What the model is shown of the conversation so far (a harness that rebuilds each step's prompt shows a
        part of it; the episode's record keeps all of it)."""
        return messages

    def details(self) -> dict | None:
        """Anything the benchmark's own tools want from the finished episode (kept in its eval row)."""
        return None


class Suite:
    name: str = ""
    parser: str = ""  # the roles layer's parser, also the benchmark name in exported data
    max_steps: int = 10
    seed: int = 0
    comparable: bool = True  # False: its scores must not be set beside published ones (e.g. a scripted user)
    # options that are local paths (dotted for nested ones, e.g. "user.path"): made absolute by the driver, since
    # the rollout actors may run on other nodes from another working directory
    path_options: tuple[str, ...] = ()

    def _make_task(self, rng: random.Random, index: int) -> Task:
        raise NotImplementedError

    def make_env(self, task: Task) -> Env:
        raise NotImplementedError

    def check(self) -> None:
        """Raise (errors.ConfigError) when this suite's environment cannot run here; called before rollouts."""

    def close(self) -> None:
        """Release what the suite holds across episodes (servers, databases) once a run is done with it."""

    def resume_inputs(self):
        """What this suite's episodes depend on beyond its options (which the rollouts' resume key holds already),
        as JSON-like data: τ²'s endpoint user gives the models its endpoint serves. None when nothing."""
        return None

    def user_model(self) -> dict | None:
        """A language model this suite's environment talks to (τ²'s engine user), which the rollout side serves:
        {path, backend, engine, temperature, top_p, max_new_tokens}; None when there is none. Environments never
        generate text themselves: the rollout side hands `serve_user` a `generate(messages, key) -> str`."""
        return None

    def serve_user(self, generate) -> None:
        raise NotImplementedError(f"suite {self.name!r} has no user model")

    def oracle_step(self, task: Task, messages: list[dict]) -> str:
        """The oracle's next assistant text, read from the task and the conversation so far."""
        raise NotImplementedError

    def _signature(self, task: Task) -> str:
        return repr(sorted(task.data.items()))

    def _stream(self, n: int) -> list[Task]:
        cache = getattr(self, "_cache", [])
        if len(cache) >= n:
            return cache[:n]
        rng = random.Random(f"{self.name}:{self.seed}")
        tasks, seen = [], set()
        while len(tasks) < n:
            task = self._make_task(rng, len(tasks))
            sig = self._signature(task)
            if sig in seen:
                continue
            seen.add(sig)
            tasks.append(task)
        self._cache = tasks
        return tasks

    def tasks(self, split: str, n: int | None = None) -> list[Task]:
        check_split(split)
        start = 0
        for s in SPLITS:
            if s == split:
                break
            start += SPLIT_SIZE[s]
        if split == "train":
            count = n if n is not None else 1000
        else:
            count = SPLIT_SIZE[split] if n is None else min(n, SPLIT_SIZE[split])
        stream = self._stream(start + count)[start: start + count]
        return [Task(t.suite, f"{self.name}-{split}-{i}", t.kind, t.data) for i, t in enumerate(stream)]
