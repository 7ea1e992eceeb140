"""The driver's command line: config paths made absolute for actors on other nodes (every path a suite's options
hold included), hub ids left alone."""

import os

import pytest

from arm_ray.config import parse_config
from arm_ray.main import resolve_paths
from tests.conftest import tiny_config


@pytest.fixture
def elsewhere(tmp_path, perturbed_pool):
    """A config written with paths relative to `tmp_path`, the directory the driver runs from."""
    for name in ("AgentBench", "tree", "user_model"):
        (tmp_path / name).mkdir()
    cwd = os.getcwd()
    os.chdir(tmp_path)
    yield tmp_path
    os.chdir(cwd)


def test_every_local_path_becomes_absolute_and_hub_ids_stay(elsewhere, perturbed_pool):
    cfg = tiny_config(perturbed_pool)
    cfg["benchmarks"]["agentbench_os"].update(suite="agentbench_os",
                                              options={"data_dir": "AgentBench", "rootfs_dir": "./tree"})
    cfg["benchmarks"]["tau_bench"].update(suite="tau2_retail", options={"user": {"kind": "engine",
                                                                                 "path": "user_model"}})
    cfg["benchmarks"]["dbbench"] = {"suite": "agentbench_db", "options": {"data_dir": "AgentBench"}}
    cfg["weak"] = {"benchmarks": ["officebench"]}
    out = resolve_paths(parse_config(cfg)).benchmarks
    assert out["agentbench_os"].options == {"data_dir": str(elsewhere / "AgentBench"),
                                            "rootfs_dir": str(elsewhere / "tree")}
    assert out["tau_bench"].options["user"] == {"kind": "engine", "path": str(elsewhere / "user_model")}
    assert out["dbbench"].options["data_dir"] == str(elsewhere / "AgentBench")

    cfg["benchmarks"]["tau_bench"]["options"]["user"]["path"] = "HuggingFaceTB/SmolLM2-135M-Instruct"
    hub = resolve_paths(parse_config(cfg)).benchmarks["tau_bench"].options["user"]["path"]
    assert hub == "HuggingFaceTB/SmolLM2-135M-Instruct"  # no such directory here: a hub id, downloaded by each node
    cfg["benchmarks"]["tau_bench"]["options"] = {"user": {"kind": "scripted"}}  # no path option: nothing to do
    assert resolve_paths(parse_config(cfg)).benchmarks["tau_bench"].options == {"user": {"kind": "scripted"}}
