"""Rollout actors: each owns one vLLM engine and evaluates models on it, one job at a time.

A job is (model name, checkpoint, suite runs). The backend cuts each model's
runs into shards when there are more actors than models, so every engine stays
busy; within a job all episodes advance together and the engine batches them.
"""

from __future__ import annotations

from typing import Callable

import ray
from ray.util.actor_pool import ActorPool

from arm_ray.evaluation.engine import VLLMEngine
from arm_ray.evaluation.rollout import SuiteRun, rollout, sampling_by_suite


@ray.remote
class RolloutActor:
    def __init__(self, engine: dict, seed: int, use_gpu: bool, threads: int):
        self.engine = VLLMEngine(engine, seed, use_gpu, threads)

    def evaluate(self, model: str, path: str, runs: list[SuiteRun], sampling: dict[str, dict]) -> list[dict]:
        self.engine.load(path)
        return rollout(self.engine.policy(sampling_by_suite(runs, sampling)), model, runs)

    def shutdown(self) -> None:
        self.engine.shutdown()


class RolloutBackend:
    """N rollout actors behind a queue. `resources`: config.Resources; `engine`: config.Engine as a dict."""

    def __init__(self, engine: dict, resources, seed: int):
        use_gpu = resources.rollout_num_gpus > 0
        threads = max(1, int(resources.rollout_num_cpus))
        opts = {"num_cpus": resources.rollout_num_cpus, "num_gpus": resources.rollout_num_gpus}
        self.actors = [RolloutActor.options(**opts).remote(engine, seed, use_gpu, threads)
                       for _ in range(resources.rollout_actors)]

    def evaluate(self, models: dict[str, str], runs: list[SuiteRun], sampling: dict[str, dict],
                 on_done: Callable[[list[dict]], None] | None = None) -> list[dict]:
        """Eval rows of every model on every run; `on_done` gets each finished job's rows."""
        shards = max(1, len(self.actors) // max(1, len(models)))
        jobs = [(m, p, [SuiteRun(r.benchmark, r.suite, r.split, r.n, s, shards) for r in runs])
                for m, p in models.items() for s in range(shards)]
        queue = ActorPool(self.actors)
        for job in jobs:
            queue.submit(lambda actor, j: actor.evaluate.remote(j[0], j[1], j[2], sampling), job)
        rows: list[dict] = []
        while queue.has_next():
            done = queue.get_next_unordered()
            rows += done
            if on_done:
                on_done(done)
        return rows

    def shutdown(self) -> None:
        ray.get([a.shutdown.remote() for a in self.actors])
        for a in self.actors:
            ray.kill(a)
