"""Tracer actors: each holds one model at a time on its own device; a queue feeds them.

All ARM logic lives in `arm_ray.tracing.Worker`; this file only places it on
Ray and spreads the jobs. Each model is traced whole by one actor with the same
packs, so the saliency does not depend on how many actors run.
"""

from __future__ import annotations

from typing import Callable, Mapping, Sequence

import ray
from ray.util.actor_pool import ActorPool

from arm_ray.config import Resources
from arm_ray.saliency import Packed, TraceResult
from arm_ray.tracing import Sources, TraceJob, Worker


@ray.remote
class TracerActor:
    def __init__(self, sources: Sources, torch_threads: int | None):
        self.worker = Worker(sources, torch_threads)

    def trace(self, job: TraceJob, packed: Mapping[str, Packed]) -> TraceResult:
        return self.worker.trace(job, packed)

    def write_candidate(self, recipe, out: str, max_shard_bytes: int, readme: str | None, overwrite: bool) -> None:
        self.worker.write_candidate(recipe, out, max_shard_bytes, readme, overwrite)


class RayBackend:
    """The pipeline's tracing backend on Ray: N tracer actors behind a queue."""

    def __init__(self, sources: Sources, resources: Resources, n_jobs: int):
        threads = resources.torch_threads or max(1, int(resources.tracer_num_cpus))
        opts = {"num_cpus": resources.tracer_num_cpus, "num_gpus": resources.tracer_num_gpus}
        n = max(1, min(resources.tracers, n_jobs))
        self.actors = [TracerActor.options(**opts).remote(sources, threads) for _ in range(n)]

    def trace(self, jobs: Sequence[TraceJob], packed: Mapping[str, Packed],
              on_done: Callable[[TraceResult], None] | None = None) -> list[TraceResult]:
        packed_ref = ray.put(dict(packed))  # one copy in the object store, shared by every actor
        queue = ActorPool(self.actors)
        for job in jobs:
            queue.submit(lambda actor, j: actor.trace.remote(j, packed_ref), job)
        results = []
        while queue.has_next():
            results.append(queue.get_next_unordered())
            if on_done:
                on_done(results[-1])
        return results

    def write_candidate(self, recipe, out, max_shard_bytes, readme, overwrite=False) -> None:
        ray.get(self.actors[0].write_candidate.remote(recipe, out, max_shard_bytes, readme, overwrite))

    def shutdown(self) -> None:
        for a in self.actors:
            ray.kill(a)
