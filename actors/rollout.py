"""Rollout actors: each owns one vLLM engine and evaluates models on it, one job at a time.

A job is (model name, checkpoint, suite runs). The backend cuts each model's
runs into shards when there are more actors than models, so every engine stays
busy; within a job all episodes advance together and the engine batches them.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import ray

from actors.group import ActorGroup, Placed
from arm_ray import logs
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
    def __init__(self, engine: dict, seed: int, use_gpu: bool, threads: int, log_dir: str | None = None):
        if log_dir:  # the engine's own output (dozens of lines per engine start) goes to the run, not the console
            logs.to_file(Path(log_dir) / f"rollout-{os.getpid()}.log")
        self.engine = VLLMEngine(engine, seed, use_gpu, threads)

    def evaluate(self, job: RolloutJob, sampling: dict[str, dict]) -> list[dict]:
        self.engine.load(job.path)
        return rollout(self.engine.policy(sampling_by_suite(job.runs, sampling)), job.model, job.runs)

    def shutdown(self) -> None:
        self.engine.shutdown()


def actor_resources(resources, tp: int) -> tuple[dict, list[dict] | None]:
    """What one rollout actor asks Ray for, and its placement group's bundles (None: no placement group).

    With tensor parallelism the engine's `tp` GPU workers are Ray actors of their own, one per bundle of one
    node; the actor (the engine's driver) sits in bundle 0 beside a worker and takes a share of its CPUs."""
    if tp <= 1:
        return {"num_cpus": resources.rollout_num_cpus, "num_gpus": resources.rollout_num_gpus}, None
    cpus = resources.rollout_num_cpus / tp
    return {"num_cpus": cpus, "num_gpus": 0}, [{"CPU": cpus, "GPU": 1}] * tp


def engine_threads(resources) -> int:
    """CPU threads of each rollout engine: `rollout_threads`, else its whole CPUs (at least one)."""
    return resources.rollout_threads or max(1, int(resources.rollout_num_cpus))


class RayRollouts:
    """The pipeline's rollout backend (`arm_ray.rollout.backend.RolloutBackend`) on Ray: N vLLM actors.

    `resources`: config.Resources; `engine`: config.Engine as a dict; `log_dir`: where each actor writes its
    engine's output (None: to the console, through Ray).
    """

    def __init__(self, engine: dict, resources, seed: int, log_dir: str | None = None):
        use_gpu = resources.rollout_num_gpus > 0
        threads = engine_threads(resources)
        opts, bundles = actor_resources(resources, engine.get("tensor_parallel_size", 1))
        self.group = ActorGroup(RolloutActor, resources.rollout_actors, opts, engine, seed, use_gpu, threads, log_dir,
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
