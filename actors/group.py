"""One helper for a group of identical Ray actors fed from a queue (tracers, rollout engines)."""

from __future__ import annotations

import os
from typing import Any, Callable, Iterable

import ray
from ray.util.actor_pool import ActorPool
from ray.util.placement_group import placement_group, remove_placement_group
from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy

# An actor whose process dies (OOM, a lost node, a kill) is started again and its unfinished calls run again;
# jobs are deterministic (same inputs, same seeds), so a retried job returns what the first try would have.
# Exceptions raised by the job itself are not retried: they are the run's errors.
RESTARTS = {"max_restarts": 3, "max_task_retries": 3}


class Placed:
    """Base of our actor classes: `where()` says where the actor runs (report.json's `placement`)."""

    def where(self) -> dict:
        ctx = ray.get_runtime_context()
        return {"node_id": ctx.get_node_id(), "node_ip": ray.util.get_node_ip_address(), "pid": os.getpid(),
                "gpus": [str(g) for g in ray.get_gpu_ids()]}


class ActorGroup:
    """`n` actors of one class, each started with the same arguments and resource options.

    `map_unordered` hands each job to whichever actor is free and yields the
    results as they finish, so a slow job never holds the others back.
    `bundles`: each actor reserves a placement group of these bundles on one node
    (STRICT_PACK), runs in the first, and the workers it starts (vLLM's tensor-
    parallel workers) land in the group's bundles.
    """

    def __init__(self, actor_class, n: int, options: dict, *args, start_timeout_s: float | None = None,
                 what: str = "actor", bundles: list[dict] | None = None):
        self.what = what
        self.groups = [placement_group(bundles, strategy="STRICT_PACK") for _ in range(n)] if bundles else []
        if self.groups and start_timeout_s is not None:
            self._wait_groups(start_timeout_s, bundles)
        self.actors = [actor_class.options(**{**RESTARTS, **options, **self._in_group(i)}).remote(*args)
                       for i in range(n)]
        if start_timeout_s is not None:
            self.wait_started(start_timeout_s, what, options)

    def _in_group(self, i: int) -> dict:
        if not self.groups:
            return {}
        return {"scheduling_strategy": PlacementGroupSchedulingStrategy(
            self.groups[i], placement_group_bundle_index=0, placement_group_capture_child_tasks=True)}

    def _wait_groups(self, timeout_s: float, bundles: list[dict]) -> None:
        from arm_ray.errors import ConfigError

        ready, pending = ray.wait([g.ready() for g in self.groups], num_returns=len(self.groups), timeout=timeout_s)
        if pending:
            self._remove_groups()
            raise ConfigError(f"resources: {len(pending)} of {len(self.groups)} placement groups for {self.what} "
                              f"actors ({len(bundles)} bundles of {bundles[0]} on one node each) were not placed "
                              f"within resources.actor_start_timeout_s={timeout_s:g} s; the cluster has "
                              f"{ray.cluster_resources()}")

    def _remove_groups(self) -> None:
        for g in self.groups:
            remove_placement_group(g)
        self.groups = []

    def placement(self) -> list[dict]:
        """Where each actor runs (node, IP, process, GPUs), in actor order."""
        return [{"actor": self.what, "index": i, **w} for i, w in
                enumerate(ray.get([a.where.remote() for a in self.actors]))]

    def wait_started(self, timeout_s: float, what: str, options: dict) -> None:
        """Every actor placed and constructed within `timeout_s`, or a ConfigError (Ray itself would wait forever
        for resources that never come)."""
        from arm_ray.errors import ConfigError

        ready, pending = ray.wait([a.__ray_ready__.remote() for a in self.actors], num_returns=len(self.actors),
                                  timeout=timeout_s)
        ray.get(ready)  # a constructor that raised raises here
        if pending:
            for a in self.actors:
                ray.kill(a)
            self._remove_groups()
            asks = ", ".join(f"{k}={v:g}" for k, v in options.items() if isinstance(v, (int, float)))
            raise ConfigError(f"resources: {len(pending)} of {len(self.actors)} {what} actors ({asks} each) were not "
                              f"placed within resources.actor_start_timeout_s={timeout_s:g} s; the cluster has "
                              f"{ray.cluster_resources()}")

    def map_unordered(self, method: str, jobs: Iterable, *shared,
                      on_done: Callable[[Any], None] | None = None) -> list:
        """`actor.<method>(job, *shared)` for every job; the results in the order they finished."""
        queue = ActorPool(self.actors)
        for job in jobs:
            queue.submit(lambda actor, j: getattr(actor, method).remote(j, *shared), job)
        results = []
        while queue.has_next():
            results.append(queue.get_next_unordered())
            if on_done:
                on_done(results[-1])
        return results

    def call_one(self, method: str, *args) -> Any:
        """`<method>(*args)` on the first actor, waited for."""
        return ray.get(getattr(self.actors[0], method).remote(*args))

    def shutdown(self, method: str | None = None) -> None:
        """Call `method` on every actor first (a clean stop), then kill them."""
        if method:
            ray.get([getattr(a, method).remote() for a in self.actors])
        for a in self.actors:
            ray.kill(a)
        self._remove_groups()
