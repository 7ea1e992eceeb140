"""One registry keyed by suite name: the offline suites by name, any other suite by a dotted string."""

import pytest

from arm_ray.errors import ConfigError
from arm_ray.suites import BENCHMARK_SUITES, SUITES, get_suite
from arm_ray.world import OFFLINE_SUITES


def test_suites_by_name():
    assert list(SUITES) == list(OFFLINE_SUITES) + list(BENCHMARK_SUITES)
    for name in SUITES:  # a real benchmark's suite imports its harness only when it first loads tasks
        if name.startswith(("agentbench_", "officebench")):  # their data directory is a required option
            with pytest.raises(ConfigError, match=r"^benchmarks\.db\.options\.data_dir: Field required$"):
                get_suite(name, "benchmarks.db.suite")
            assert get_suite(name, options={"data_dir": "/nowhere"}).name == name
            continue
        assert get_suite(name).name == name


def test_a_dotted_suite_and_an_unknown_one():
    assert get_suite("examples.custom_suite:AdditionSuite").name == "addition"
    with pytest.raises(ConfigError, match=r"^benchmarks\.x\.suite: unknown suite 'excel'; known: retail, office, "
                                          r"shell, sql, tau2_retail, tau2_airline, agentbench_db, agentbench_os, "
                                          r"officebench, officebench_simia \(or a 'package\.module:Name' string\)$"):
        get_suite("excel", "benchmarks.x.suite")
