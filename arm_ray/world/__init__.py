"""The offline agent world: four suites that mirror the paper's benchmarks (ARM_SPEC, "Benchmark protocols").

    retail  ~ tau-bench retail   (in-domain)   parser tau_bench
    office  ~ OfficeBench (SIMIA) (in-domain)  parser officebench
    shell   ~ AgentBench OS      (in-domain)   parser agentbench_os
    sql     ~ DB-bench           (out-of-domain) parser dbbench

Suites are looked up lazily by name (`get_suite`), or by a dotted
`package.module:Class` string for suites that live outside this package.
"""

from __future__ import annotations

import importlib

from arm_ray.world.base import Suite

SUITES = {
    "retail": "arm_ray.world.retail:RetailSuite",
    "office": "arm_ray.world.office:OfficeSuite",
    "shell": "arm_ray.world.shell:ShellSuite",
    "sql": "arm_ray.world.sql:SqlSuite",
}
IN_DOMAIN = ("retail", "office", "shell")


def get_suite(name: str) -> Suite:
    target = SUITES.get(name, name)
    if ":" not in target:
        raise KeyError(f"unknown suite {name!r}; known: {', '.join(SUITES)} (or a 'package.module:Class' string)")
    module, cls = target.split(":", 1)
    return getattr(importlib.import_module(module), cls)()


__all__ = ["IN_DOMAIN", "SUITES", "Suite", "get_suite"]
