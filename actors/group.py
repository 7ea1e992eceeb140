"""One helper for a group of identical Ray actors fed from a queue (tracers, rollout engines)."""

from __future__ import annotations

from typing import Any, Callable, Iterable

import ray
from ray.util.actor_pool import ActorPool

# An actor whose process dies (OOM, a lost node, a kill) is started again and its unfinished calls run again;
# jobs are deterministic (same inputs, same seeds), so a retried job returns what the first try would have.
# Exceptions raised by the job itself are not retried: they are the run's errors.
RESTARTS = {"max_restarts": 3, "max_task_retries": 3}


class ActorGroup:
    """`n` actors of one class, each started with the same arguments and resource options.

    `map_unordered` hands each job to whichever actor is free and yields the
    results as they finish, so a slow job never holds the others back.
    """

    def __init__(self, actor_class, n: int, options: dict, *args, start_timeout_s: float | None = None,
                 what: str = "actor"):
        self.actors = [actor_class.options(**{**RESTARTS, **options}).remote(*args) for _ in range(n)]
        if start_timeout_s is not None:
            self.wait_started(start_timeout_s, what, options)

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
