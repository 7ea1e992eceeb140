"""The offline agent world: four seeded suites that mirror the paper's benchmarks (ARM_SPEC, "Benchmark protocols").

    retail  ~ tau-bench retail    (in-domain)     parser tau_bench
    office  ~ OfficeBench (SIMIA) (in-domain)     parser officebench
    shell   ~ AgentBench OS       (in-domain)     parser agentbench_os
    sql     ~ DB-bench            (out-of-domain) parser dbbench

Environments only: each suite's splits, environment, reward and oracle
(`base.Suite`), and the shell sandbox. The agent loop and policies are in
`arm_ray.rollout`, the toy models trained on this world in `arm_ray.toy`, and
the registry that finds a suite by name, `arm_ray.suites`.
"""

from __future__ import annotations

# name -> class, imported lazily through arm_ray.suites.SUITES; the order is the world's order everywhere
OFFLINE_SUITES = {
    "retail": "arm_ray.world.retail:RetailSuite",
    "office": "arm_ray.world.office:OfficeSuite",
    "shell": "arm_ray.world.shell:ShellSuite",
    "sql": "arm_ray.world.sql:SqlSuite",
}
# the suites the toy pools have experts for; sql stays out of domain
IN_DOMAIN = ("retail", "office", "shell")

__all__ = ["IN_DOMAIN", "OFFLINE_SUITES"]
