"""Models that suites' environments talk to, served on the rollout side (τ²'s engine user).

An environment never generates text itself: a suite whose `user_model()` names a
model gets a `generate(messages, key) -> str` from here (`serve_users`), backed by
a vLLM engine in this process beside the agent's, or by greedy transformers
(`backend: transformers`, for tests). The engine starts on the first reply, so a
run that never reaches a user turn never loads it.
"""

from __future__ import annotations

import itertools
import threading
from contextlib import contextmanager
from typing import Iterable, Iterator

from arm_ray.rollout.agent import Turn
from arm_ray.world.base import Suite, Task


class UserModel:
    """One user model: {path, backend, engine, temperature, top_p, max_new_tokens} (τ²'s `EngineUser` fields).

    A reply is never empty (at least one token before the end of turn); one that
    decodes to nothing visible raises, which ends its episode as an error."""

    def __init__(self, spec: dict):
        self.spec, self.engine, self.policy = dict(spec), None, None
        self._lock = threading.Lock()  # the episodes' environment threads share one model
        self._tickets = itertools.count()
        self._replies: dict[int, str | None] = {}
        self.peak_batch = 0  # the most user turns the engine decoded together

    def _start(self) -> None:
        s = self.spec
        if s["backend"] == "vllm":
            import torch

            from arm_ray.config import Engine
            from arm_ray.rollout.vllm_engine import ENGINE_LOCK, VLLMEngine

            gpu = torch.cuda.is_available()
            with ENGINE_LOCK:  # the agent's engine may be stepping in this process
                self.engine = VLLMEngine(Engine(**s["engine"]).model_dump(), seed=0, use_gpu=gpu, threads=1)
                self.engine.load(s["path"])
            self.policy = self.engine.policy({"user": {"temperature": s["temperature"], "top_p": s["top_p"],
                                                       "max_new_tokens": s["max_new_tokens"], "min_new_tokens": 1}})
        else:
            from transformers import AutoTokenizer

            from arm_ray.checkpoints import load_model
            from arm_ray.rollout.policies import TransformersPolicy

            self.policy = TransformersPolicy(load_model(s["path"]), AutoTokenizer.from_pretrained(s["path"]),
                                             max_new_tokens=s["max_new_tokens"], max_prompt=1 << 20,
                                             min_new_tokens=1)

    def reply(self, messages: list[dict], key: str) -> str:
        with self._lock:
            if self.policy is None:
                self._start()
        turn = Turn(Task("user", f"user:{key}", "user", {}), messages, None)
        text = self.policy([turn])[0] if self.engine is None else self._batched(turn)
        text = (text or "").replace("<|im_end|>", "").strip()
        if not text:  # τ² would reject it too: the episode ends as an error, visible in the results' error rate
            raise ValueError("the user model wrote an empty reply")
        return text

    def _batched(self, turn: Turn) -> str | None:
        """One reply on the engine, batched with the other episodes' user turns: each environment thread submits
        its turn, then whichever thread holds the lock runs an engine step for all of them, until its own is done.
        Each request carries its own seed (the episode and the turn), so batching does not change a reply."""
        with self._lock:
            ticket = next(self._tickets)
            self.policy.submit(ticket, turn)
        while True:
            with self._lock:
                if ticket in self._replies:
                    return self._replies.pop(ticket)
                self.peak_batch = max(self.peak_batch, len(self.policy.requests))
                for k, text in self.policy.poll():  # one engine step, under the engine lock
                    self._replies[k] = text

    def shutdown(self) -> None:
        if self.engine is not None:
            from arm_ray.rollout.vllm_engine import ENGINE_LOCK

            with ENGINE_LOCK:
                self.engine.shutdown()
            self.engine = None
        self.policy = None


@contextmanager
def serve_users(suites: Iterable[Suite]) -> Iterator[list[UserModel]]:
    """Attach a user model to every suite that asks for one; shut them down when the block ends."""
    served = []
    try:
        for suite in suites:
            spec = suite.user_model()
            if spec is not None:
                served.append(UserModel(spec))
                suite.serve_user(served[-1].reply)
        yield served
    finally:
        for m in served:
            m.shutdown()
