"""Suites by name, one registry: the offline world's suites and adapters that run real benchmarks' own tasks.

A config's `benchmarks.<b>.suite` names an entry of `SUITES`, or a dotted
`package.module:Class` (see `examples/custom_suite.py`). An adapter for a real
benchmark (its tasks, tools, database and evaluator) is a `Suite` like the
offline ones (`arm_ray.world.base`): it lives in a module of this package and is
registered below by name, imported only when a run asks for it.
"""

from __future__ import annotations

from arm_ray.registry import Registry
from arm_ray.world import OFFLINE_SUITES
from arm_ray.world.base import Suite

SUITES = Registry("suite", OFFLINE_SUITES)


def get_suite(name: str, where: str = "suite") -> Suite:
    """A fresh instance of the suite `name` (a registered name or `package.module:Class`)."""
    return SUITES.get(name, where)()


__all__ = ["SUITES", "Suite", "get_suite"]
