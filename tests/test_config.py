"""Config validation: errors name the field; both shipped configs validate."""

from pathlib import Path

import pytest

from arm_ray.config import load_config, parse_config
from arm_ray.errors import ConfigError
from arm_ray.evaluation import metrics
from tests.conftest import tiny_config

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("name", ["demo.yaml", "quick.yaml", "qwen3-8b-simia.yaml", "tau2-toy.yaml", "sparse.yaml",
                                  "officebench-toy.yaml", "agentbench-toy.yaml"])
def test_shipped_configs_validate(name):
    cfg = load_config(ROOT / "configs" / name)
    assert cfg.in_domain


def test_paper_config_shares_one_expert():
    cfg = load_config(ROOT / "configs" / "qwen3-8b-simia.yaml")
    assert cfg.expert_names() == ["tau", "office", "agentbench"]
    assert cfg.in_domain == ["tau_retail", "tau_airline", "officebench", "webshop", "agentbench_os"]
    assert cfg.role_of("webshop") == "action" and cfg.role_of("tau_airline") == "tool_call"
    assert cfg.benchmarks["tau_airline"].options["user"]["kind"] == "endpoint"  # τ² with a served user model


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


def test_weak_takes_at_most_one_source(tmp_path):
    with pytest.raises(ConfigError, match="weak: give at most one of"):
        parse_config(tiny_config(tmp_path, weak={"benchmarks": ["tau_bench"], "dev_results": "x.json"}))


def test_yaml_error_names_line(tmp_path):
    p = tmp_path / "c.yaml"
    p.write_text("name: x\nbase: [unclosed\n")
    with pytest.raises(ConfigError, match=r"c.yaml:2: not valid YAML"):
        load_config(p)
    # the culprit's line, not the line where the parser gave up
    for text, line in [("name: x\nseed 0\nbase: {path: a}\n", 2), ("name: x\nbase: {path: a\nseed: 0\n", 2),
                       ('name: "x\nseed: 0\n', 1), ("name: x\n  seed: 0\nbase: 1\n", 2)]:
        p.write_text(text)
        with pytest.raises(ConfigError, match=rf"c.yaml:{line}: not valid YAML"):
            load_config(p)


def with_suites(tmp_path, **over):
    cfg = tiny_config(tmp_path, **over)
    for b, suite in zip(("tau_bench", "officebench", "agentbench_os"), ("retail", "office", "shell")):
        cfg["benchmarks"][b]["suite"] = suite
    return cfg


def test_dev_rollouts_need_an_evaluation_and_suites(tmp_path):
    with pytest.raises(ConfigError, match="weak: give `benchmarks` or `dev_results`, or an `evaluation`"):
        parse_config(tiny_config(tmp_path, weak={"threshold": 0.1}))
    cfg = tiny_config(tmp_path, weak={"threshold": 0.1}, evaluation={})
    cfg["benchmarks"]["tau_bench"]["suite"] = "retail"
    with pytest.raises(ConfigError, match="benchmarks.officebench.suite: dev rollouts decide"):
        parse_config(cfg)
    assert parse_config(with_suites(tmp_path, weak={"threshold": 0.1}, evaluation={})).weak.from_rollouts


def test_evaluation_fields_are_checked(tmp_path):
    cfg = with_suites(tmp_path, evaluation={})
    cfg["benchmarks"]["officebench"]["suite"] = "excel"
    with pytest.raises(ConfigError, match="benchmarks.officebench.suite: unknown suite 'excel'"):
        parse_config(cfg)
    cfg = with_suites(tmp_path, evaluation={"sampling": {"webshop": {"temperature": 0.1}}})
    with pytest.raises(ConfigError, match="evaluation.sampling.webshop: not a benchmark"):
        parse_config(cfg)
    cfg = with_suites(tmp_path, evaluation={"models": ["arm", "oracle"]})
    with pytest.raises(ConfigError, match="evaluation.models.1"):
        parse_config(cfg)
    cfg = with_suites(tmp_path, evaluation={})
    cfg["benchmarks"]["officebench"]["suite"] = "retail"
    with pytest.raises(ConfigError, match="suite 'retail' is given to two benchmarks"):
        parse_config(cfg)


def test_suite_options_need_a_suite(tmp_path):
    cfg = with_suites(tmp_path, evaluation={})
    cfg["benchmarks"]["officebench"] = {"expert": cfg["benchmarks"]["officebench"]["expert"], "options": {"trials": 2}}
    with pytest.raises(ConfigError, match="benchmarks.officebench.options: given without a `suite`"):
        parse_config(cfg)


def test_sampling_defaults_are_the_papers(tmp_path):
    cfg = parse_config(with_suites(tmp_path, evaluation={"sampling": {"officebench": {"max_new_tokens": 64}}}))
    assert cfg.sampling_of("tau_bench").model_dump() == {"temperature": 0.2, "top_p": 1.0, "max_new_tokens": 1024}
    assert cfg.sampling_of("officebench").model_dump() == {"temperature": 0.7, "top_p": 1.0, "max_new_tokens": 64}
    assert cfg.sampling_of("agentbench_os").temperature == 0.7
    assert cfg.evaluated == ["tau_bench", "officebench", "agentbench_os"]


def test_an_operator_cannot_take_a_models_name(tmp_path):
    for name in ("tau", "arm", "backbone"):
        cfg = with_suites(tmp_path, evaluation={})
        cfg["operators"][1]["name"] = name
        with pytest.raises(ConfigError, match=rf"operators\[1\]\.name: '{name}' is .*results are keyed by model name"):
            parse_config(cfg)


def test_larger_gap_needs_gaps(tmp_path):
    cfg = with_suites(tmp_path, evaluation={})
    cfg.update(conflict_policy="larger_gap", weak={"benchmarks": ["tau_bench"]})
    with pytest.raises(ConfigError, match="conflict_policy: larger_gap compares dev gaps, and weak.benchmarks"):
        parse_config(cfg)


@pytest.mark.parametrize("over,match", [
    ({"trace": {"devices": ["gpu0"]}}, r"trace.devices.*\[0\]: 'gpu0' is not a device; expected cpu, cuda or cuda:N"),
    ({"trace": {"devices": []}}, "give at least one device"),
    ({"trace": {"devices": ["cuda:0", "cuda:1"]}}, r"names cuda:0, but resources.tracer_num_gpus is 0"),
    ({"trace": {"devices": ["cuda:0", "cuda:1"]}, "resources": {"tracer_num_gpus": 1}},
     r"names cuda:1, but each tracer actor holds resources.tracer_num_gpus=1 GPU"),
    ({"resources": {"tracer_num_gpus": 1.5}}, r"resources.tracer_num_gpus: 1.5 GPUs; above one GPU"),
])
def test_multi_device_fields(tmp_path, over, match):
    cfg = tiny_config(tmp_path)
    for k, v in over.items():
        cfg[k] = {**cfg.get(k, {}), **v}
    with pytest.raises(ConfigError, match=match):
        parse_config(cfg)


def test_split_tracer_and_tensor_parallel_engine_validate(tmp_path):
    cfg = tiny_config(tmp_path)
    cfg["trace"] = {"devices": ["cuda:0", "cuda:1", "cpu"]}
    cfg["resources"].update(tracer_num_gpus=2, rollout_num_gpus=4)
    cfg["benchmarks"]["tau_bench"]["suite"] = "retail"
    cfg["weak"] = {"threshold": 0.1}
    cfg["benchmarks"]["officebench"]["suite"] = "office"
    cfg["benchmarks"]["agentbench_os"]["suite"] = "shell"
    cfg["evaluation"] = {"engine": {"tensor_parallel_size": 4}}
    parsed = parse_config(cfg)
    assert parsed.trace.devices == ["cuda:0", "cuda:1", "cpu"]
    cfg["resources"]["rollout_num_gpus"] = 1
    with pytest.raises(ConfigError, match=r"tensor_parallel_size: 4 GPUs per engine needs "
                                          r"resources.rollout_num_gpus: 4"):
        parse_config(cfg)


def test_an_aggregate_reports_its_members_once(tmp_path):
    cfg = with_suites(tmp_path, evaluation={})
    for b in ("tau_bench", "officebench"):
        cfg["benchmarks"][b]["aggregate"] = "joined"
    got = parse_config(cfg)
    assert metrics.units(got.evaluated, got.aggregate_of) == {"joined": ["tau_bench", "officebench"],
                                                              "agentbench_os": ["agentbench_os"]}
    assert metrics.units(["agentbench_os"], got.aggregate_of) == {"agentbench_os": ["agentbench_os"]}


@pytest.mark.parametrize("members,name,match", [
    (["tau_bench", "officebench"], "agentbench_os", "benchmarks.tau_bench.aggregate: 'agentbench_os' is a benchmark's "
     "name"),
    (["officebench"], "joined", "benchmarks.officebench.aggregate: 'joined' joins only this benchmark"),
    (["tau_bench", "dbbench"], "joined", "aggregate 'joined' joins tau_bench, dbbench, of which only some have an "
     "expert"),
])
def test_bad_aggregates_are_named(tmp_path, members, name, match):
    cfg = with_suites(tmp_path, evaluation={})
    cfg["benchmarks"]["dbbench"] = {"suite": "sql"}
    for b in members:
        cfg["benchmarks"][b]["aggregate"] = name
    with pytest.raises(ConfigError, match=match):
        parse_config(cfg)


def test_paper_config_reports_tau_bench_once():
    cfg = load_config(ROOT / "configs" / "qwen3-8b-simia.yaml")
    units = metrics.units(cfg.evaluated, cfg.aggregate_of)
    assert units["tau_bench"] == ["tau_retail", "tau_airline"] and len(units) == len(cfg.evaluated) - 1
