"""Config validation: errors name the field; both shipped configs validate."""

from pathlib import Path

import pytest

from arm_ray.config import load_config, parse_config
from arm_ray.errors import ConfigError
from tests.conftest import tiny_config

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("name", ["demo.yaml", "toy.yaml", "qwen3-8b-simia.yaml"])
def test_shipped_configs_validate(name):
    cfg = load_config(ROOT / "configs" / name)
    assert cfg.in_domain


def test_paper_config_shares_one_expert():
    cfg = load_config(ROOT / "configs" / "qwen3-8b-simia.yaml")
    assert cfg.expert_names() == ["tau", "office", "agentbench"]
    assert cfg.in_domain == ["tau_bench", "officebench", "webshop", "agentbench_os"]
    assert cfg.role_of("webshop") == "action" and cfg.role_of("tau_bench") == "tool_call"


@pytest.mark.parametrize("k", [0, -0.5, 1.01])
def test_k_outside_unit_interval(k, tmp_path):
    with pytest.raises(ConfigError, match=r"k: must lie in \(0, 1\]"):
        parse_config(tiny_config(tmp_path, k=k))


def test_weak_benchmark_without_expert(tmp_path):
    cfg = tiny_config(tmp_path)
    cfg["benchmarks"]["dbbench"] = {}
    cfg["weak"] = {"benchmarks": ["dbbench"]}
    with pytest.raises(ConfigError, match="weak.benchmarks: 'dbbench' has no expert"):
        parse_config(cfg)


def test_unknown_field_and_role(tmp_path):
    with pytest.raises(ConfigError, match="kk: unknown field"):
        parse_config(tiny_config(tmp_path, kk=1))
    cfg = tiny_config(tmp_path)
    cfg["benchmarks"]["tau_bench"]["role"] = "action"
    with pytest.raises(ConfigError, match="benchmarks.tau_bench.role: parser tau_bench marks 'tool_call'"):
        parse_config(cfg)


def test_weak_needs_one_source(tmp_path):
    with pytest.raises(ConfigError, match="exactly one of"):
        parse_config(tiny_config(tmp_path, weak={}))


def test_yaml_error_names_line(tmp_path):
    p = tmp_path / "c.yaml"
    p.write_text("name: x\nbase: [unclosed\n")
    with pytest.raises(ConfigError, match=r"c.yaml:\d+: not valid YAML"):
        load_config(p)
