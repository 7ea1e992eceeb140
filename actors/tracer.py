"""Tracer actors: each holds one model at a time on its own device; a queue feeds them.

All ARM logic lives in `arm_ray.tracing.Worker`; this file only places it on
Ray. Each model is traced whole by one actor with the same packs, so the
saliency does not depend on how many actors run.
"""

from __future__ import annotations

from typing import Callable, Mapping, Sequence

import ray

from actors.group import ActorGroup, Placed
from arm_ray.config import Resources
from arm_ray.saliency import Packed, TraceResult
from arm_ray.tracing import Sources, TraceJob, Worker


@ray.remote
class TracerActor(Placed):
    def __init__(self, sources: Sources, torch_threads: int | None):
        self.worker = Worker(sources, torch_threads)

    def trace(self, job: TraceJob, packed: Mapping[str, Packed]) -> TraceResult:
        return self.worker.trace(job, packed)

    def write_candidate(self, recipe, out: str, max_shard_bytes: int, readme: str | None, overwrite: bool) -> None:
        self.worker.write_candidate(recipe, out, max_shard_bytes, readme, overwrite)

    def importance(self, packed: Mapping[str, Packed], out: str) -> None:
        self.worker.importance(packed, out)


class RayTracing:
    """The pipeline's tracing backend (`arm_ray.tracing.TracingBackend`) on Ray: N tracer actors."""

    def __init__(self, sources: Sources, resources: Resources, n_jobs: int):
        threads = resources.torch_threads or max(1, int(resources.tracer_num_cpus))
        opts = {"num_cpus": resources.tracer_num_cpus, "num_gpus": resources.tracer_num_gpus}
        self.group = ActorGroup(TracerActor, max(1, min(resources.tracers, n_jobs)), opts, sources, threads,
                                start_timeout_s=resources.actor_start_timeout_s, what="tracer")

    @property
    def actors(self) -> list:
        return self.group.actors

    def trace(self, jobs: Sequence[TraceJob], packed: Mapping[str, Packed],
              on_done: Callable[[TraceResult], None] | None = None) -> list[TraceResult]:
        packed_ref = ray.put(dict(packed))  # one copy in the object store, shared by every actor
        return self.group.map_unordered("trace", jobs, packed_ref, on_done=on_done)

    def write_candidate(self, recipe, out, max_shard_bytes, readme, overwrite=False) -> None:
        self.group.call_one("write_candidate", recipe, out, max_shard_bytes, readme, overwrite)

    def importance(self, packed, out) -> None:
        self.group.call_one("importance", dict(packed), out)

    def placement(self) -> list[dict]:
        return self.group.placement()

    def shutdown(self) -> None:
        self.group.shutdown()
