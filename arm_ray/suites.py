"""Suites by name, one registry: the offline world's suites and the adapters in `arm_ray.benchmarks` that run real
benchmarks' own tasks.

A config's `benchmarks.<b>.suite` names an entry of `SUITES`, or a dotted
`package.module:Class` (see `examples/custom_suite.py`, which also registers a
name). Entries are dotted strings, imported only when a run asks for one, so
this module sits low in the house: the config, the rollouts and the suites
themselves all reach it from above.
"""

from __future__ import annotations

import inspect

from pydantic import BaseModel, ConfigDict, ValidationError

from arm_ray.errors import ConfigError
from arm_ray.registry import Registry
from arm_ray.world import OFFLINE_SUITES
from arm_ray.world.base import Suite

# real benchmarks' own tasks, tools and evaluators (each needs its extra installed; imported when asked for)
BENCHMARK_SUITES = {
    "tau2_retail": "arm_ray.benchmarks.tau2:Tau2Retail",
    "tau2_airline": "arm_ray.benchmarks.tau2:Tau2Airline",
    "agentbench_db": "arm_ray.benchmarks.agentbench_db:AgentBenchDB",
    "agentbench_os": "arm_ray.benchmarks.agentbench_os:AgentBenchOS",
    "officebench": "arm_ray.benchmarks.officebench:OfficeBench",
    "officebench_simia": "arm_ray.benchmarks.officebench:OfficeBenchSimia",
}
SUITES = Registry("suite", {**OFFLINE_SUITES, **BENCHMARK_SUITES})


class SuiteOptions(BaseModel):
    """A suite's options (config `benchmarks.<b>.options`): unknown fields are errors, as everywhere in a config."""
    model_config = ConfigDict(extra="forbid")


def get_suite(name: str, where: str = "suite", options: dict | None = None) -> Suite:
    """A fresh instance of the suite `name` (a registered name or `package.module:Class`) with its options.

    `where` names the config field in errors (`benchmarks.<b>.suite`); option
    errors name `benchmarks.<b>.options.<field>`.
    """
    cls = SUITES.get(name, where)
    where_opts = where.removesuffix(".suite") + ".options"
    if options and (cls.__init__ is Suite.__init__ or cls.__init__ is object.__init__):
        raise ConfigError(f"{where_opts}: suite {name!r} takes no options")
    params = inspect.signature(cls.__init__).parameters
    if options and not any(p.kind is p.VAR_KEYWORD for p in params.values()):
        known = [p for p in params if p != "self"]
        for key in options:
            if key not in known:
                raise ConfigError(f"{where_opts}.{key}: suite {name!r} has no option {key!r} "
                                  f"(its options: {', '.join(known)})")
    try:
        return cls(**(options or {}))  # a required option left out is named like a wrong one
    except ValidationError as e:
        raise ConfigError("\n".join(f"{where_opts}.{'.'.join(map(str, err['loc']))}: "
                                     f"{err['msg'].removeprefix('Value error, ')}" for err in e.errors())) from None
    except (TypeError, ValueError) as e:
        raise ConfigError(f"{where_opts}: {e}") from None


def check_suite(suite: Suite, benchmark: str) -> None:
    """`suite.check()` (its environment can run here), its error put under `benchmarks.<benchmark>.`."""
    try:
        suite.check()
    except ConfigError as e:
        raise ConfigError(f"benchmarks.{benchmark}.{e}") from None


__all__ = ["SUITES", "Suite", "SuiteOptions", "check_suite", "get_suite"]
