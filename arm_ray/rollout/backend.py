"""Who runs the episodes: the pipeline sees a `RolloutBackend`; two implement it.

    LocalRollouts              this process, a batch policy: the suites' oracles or greedy transformers
    actors.rollout.RayRollouts vLLM engines in Ray rollout actors (the real runs)

Both return the same eval rows (`results.COLUMNS`), so dev diagnosis and the
results table read the same whatever ran the episodes.
"""

from __future__ import annotations

from typing import Callable, Literal, Protocol

from arm_ray.rollout.run import SuiteRun, rollout, sampling_by_suite

OnDone = Callable[[list[dict]], None]


class RolloutBackend(Protocol):
    def evaluate(self, models: dict[str, str], runs: list[SuiteRun], sampling: dict[str, dict],
                 on_done: OnDone | None = None) -> list[dict]:
        """Eval rows of every model ({name: checkpoint dir}) on every run; `on_done` gets each finished batch."""

    def shutdown(self) -> None: ...


class LocalRollouts:
    """Rollouts in this process, one model after another, without vLLM.

    `policy="transformers"`: greedy generation (temperature and top-p of the
    sampling are not used; its `max_new_tokens` per benchmark is).
    `policy="oracle"`: the suites' own solvers, whatever the model (plumbing checks).
    """

    def __init__(self, policy: Literal["transformers", "oracle"] = "transformers", threads: int | None = None):
        if policy not in ("transformers", "oracle"):
            raise ValueError(f"policy {policy!r}: expected 'transformers' or 'oracle'")
        self.policy, self.threads = policy, threads

    def evaluate(self, models: dict[str, str], runs: list[SuiteRun], sampling: dict[str, dict],
                 on_done: OnDone | None = None) -> list[dict]:
        rows: list[dict] = []
        for model, path in models.items():
            done = rollout(self._policy(path, runs, sampling), model, runs)
            rows += done
            if on_done:
                on_done(done)
        return rows

    def _policy(self, path: str, runs: list[SuiteRun], sampling: dict[str, dict]):
        from arm_ray.rollout.policies import OraclePolicy, TransformersPolicy

        if self.policy == "oracle":
            return OraclePolicy(*(r.make_suite() for r in runs))
        import torch
        from transformers import AutoTokenizer

        from arm_ray.checkpoints import load_model

        if self.threads:
            torch.set_num_threads(self.threads)
        limits = {suite: s["max_new_tokens"] for suite, s in sampling_by_suite(runs, sampling).items()}
        model = load_model(path)
        return TransformersPolicy(model, AutoTokenizer.from_pretrained(path), max_new_tokens=limits)

    def shutdown(self) -> None:
        pass
