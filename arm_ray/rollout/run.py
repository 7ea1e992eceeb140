"""Run a model's episodes on benchmarks' suites, with any policy, into eval rows.

A `SuiteRun` names one benchmark's slice of tasks; all slices given together
run through one agent loop, so an engine batches across suites too.
Sharding a run (`shard` of `shards`) splits its tasks round-robin, so any
number of actors yields the same rows.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Callable

from arm_ray.rollout.agent import Policy, StreamingPolicy, run_mixed
from arm_ray.rollout.user_model import serve_users
from arm_ray.suites import check_suite, get_suite
from arm_ray.world.base import Suite, Task


@dataclass(frozen=True)
class SuiteRun:
    benchmark: str
    suite: str  # a name in arm_ray.suites.SUITES or package.module:Class
    split: str
    n: int
    shard: int = 0
    shards: int = 1
    options: dict = field(default_factory=dict)  # the suite's options (config benchmarks.<b>.options)

    def make_suite(self) -> Suite:
        return get_suite(self.suite, f"benchmarks.{self.benchmark}.suite", self.options)

    def sharded(self, shard: int, shards: int) -> "SuiteRun":
        return SuiteRun(self.benchmark, self.suite, self.split, self.n, shard, shards, self.options)

    def tasks(self, suite: Suite) -> list[Task]:
        return suite.tasks(self.split, self.n)[self.shard:: self.shards]


def rollout(policy: Policy | StreamingPolicy, model: str, runs: list[SuiteRun],
            progress: Callable[[int], None] | None = None, clock: Counter | None = None) -> list[dict]:
    """Eval rows (results.COLUMNS) of `model` on every run, in run and task order (`clock`: run_mixed's)."""
    suites = {r.suite: r.make_suite() for r in runs}
    for r in runs:  # where the episodes run (a rollout actor's node): a suite that cannot run stops the job here
        check_suite(suites[r.suite], r.benchmark)
    jobs, bench = [], []
    for r in runs:
        for t in r.tasks(suites[r.suite]):
            jobs.append((suites[r.suite], t, r.split))
            bench.append(r.benchmark)
    try:
        with serve_users(suites.values()):  # models the environments talk to (τ²'s engine user)
            episodes = run_mixed(jobs, policy, progress, clock=clock)
    finally:
        for s in suites.values():
            s.close()
    return [{**ep.record(model), "benchmark": b} for ep, b in zip(episodes, bench)]


def sampling_by_suite(runs: list[SuiteRun], sampling: dict[str, dict]) -> dict[str, dict]:
    """Per-benchmark sampling re-keyed by the suite's own name (what a policy sees on a task)."""
    out: dict[str, dict] = {}
    for r in runs:
        name = r.make_suite().name
        if out.setdefault(name, sampling[r.benchmark]) != sampling[r.benchmark]:
            raise ValueError(f"suite {name!r} serves two benchmarks with different sampling")
        out[name] = sampling[r.benchmark]
    return out


def count_tasks(runs: list[SuiteRun]) -> int:
    return sum(len(r.tasks(r.make_suite())) for r in runs)
