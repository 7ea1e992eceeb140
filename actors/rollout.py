"""Rollout actors: each owns one vLLM engine and evaluates models on it, one job at a time.

A job is (model name, checkpoint, suite runs). The backend cuts each model's
runs into shards when there are more actors than models, so every engine stays
busy; within a job all episodes advance together and the engine batches them.
"""

from __future__ import annotations

from dataclasses import dataclass

import ray

from actors.group import ActorGroup, Placed
from arm_ray.rollout.backend import OnDone
from arm_ray.rollout.run import SuiteRun, rollout, sampling_by_suite
from arm_ray.rollout.vllm_engine import VLLMEngine


@dataclass(frozen=True)
class RolloutJob:
    model: str
    path: str
    runs: list[SuiteRun]


@ray.remote
class RolloutActor(Placed):
    def __init__(self, engine: dict, seed: int, use_gpu: bool, threads: int):
        self.engine = VLLMEngine(engine, seed, use_gpu, threads)

    def evaluate(self, job: RolloutJob, sampling: dict[str, dict]) -> list[dict]:
        self.engine.load(job.path)
        return rollout(self.engine.policy(sampling_by_suite(job.runs, sampling)), job.model, job.runs)

    def shutdown(self) -> None:
        self.engine.shutdown()


class RayRollouts:
    """The pipeline's rollout backend (`arm_ray.rollout.backend.RolloutBackend`) on Ray: N vLLM actors.

    `resources`: config.Resources; `engine`: config.Engine as a dict.
    """

    def __init__(self, engine: dict, resources, seed: int):
        use_gpu = resources.rollout_num_gpus > 0
        threads = max(1, int(resources.rollout_num_cpus))
        tp = engine.get("tensor_parallel_size", 1)
        opts = {"num_cpus": resources.rollout_num_cpus, "num_gpus": resources.rollout_num_gpus}
        bundles = None
        if tp > 1:  # the engine's tp GPU workers are Ray actors of their own, one per bundle of one node
            cpus = resources.rollout_num_cpus / tp
            bundles = [{"CPU": cpus, "GPU": 1}] * tp
            opts = {"num_cpus": cpus, "num_gpus": 0}  # the driver of the engine sits in bundle 0 beside a worker
        self.group = ActorGroup(RolloutActor, resources.rollout_actors, opts, engine, seed, use_gpu, threads,
                                start_timeout_s=resources.actor_start_timeout_s, what="rollout", bundles=bundles)

    def evaluate(self, models: dict[str, str], runs: list[SuiteRun], sampling: dict[str, dict],
                 on_done: OnDone | None = None) -> list[dict]:
        shards = max(1, len(self.group.actors) // max(1, len(models)))
        jobs = [RolloutJob(m, p, [r.sharded(s, shards) for r in runs])
                for m, p in models.items() for s in range(shards)]
        done = self.group.map_unordered("evaluate", jobs, sampling, on_done=on_done)
        return [row for rows in done for row in rows]

    def placement(self) -> list[dict]:
        return self.group.placement()

    def shutdown(self) -> None:
        self.group.shutdown("shutdown")  # stop each engine core first: a bare kill leaks its shared memory
