"""The two extension points' examples run as their docstrings say, and plug into the project as documented."""

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[2]


def run_example(module: str) -> str:
    done = subprocess.run([sys.executable, "-m", module], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


def test_custom_suite_runs_and_scores_its_oracle():
    out = run_example("examples.custom_suite")
    assert "oracle: mean reward 1.00 over 20 test tasks" in out
    assert "always-zero: mean reward 0.00 over 20 test tasks" in out


def test_custom_suite_is_accepted_by_name_in_a_config(perturbed_pool):
    from arm_ray.config import parse_config
    from arm_ray.prepare import prepare
    from tests.conftest import tiny_config

    cfg = tiny_config(perturbed_pool, evaluation={})
    cfg["benchmarks"]["agentbench_os"]["suite"] = "examples.custom_suite:AdditionSuite"
    ctx = prepare(parse_config(cfg))  # the suite is imported and instantiated in preflight
    assert ctx.cfg.evaluated == ["agentbench_os"]


def test_custom_operator_runs_in_the_recipe():
    out = run_example("examples.custom_operator")
    assert "median (examples.custom_operator:task_vector_median): mean AOS" in out
    assert "selected backbone:" in out


def test_custom_operator_is_the_median_task_vector():
    import torch

    from examples.custom_operator import task_vector_median

    base = {"w": torch.zeros(3), "step": torch.tensor([7])}
    experts = {"a": {"w": torch.tensor([1.0, -1.0, 4.0]), "step": torch.tensor([7])},
               "b": {"w": torch.tensor([2.0, 5.0, 0.0]), "step": torch.tensor([7])},
               "c": {"w": torch.tensor([3.0, 0.0, -2.0]), "step": torch.tensor([7])}}
    merged = task_vector_median(experts, base, {"scale": 0.5})
    assert merged["w"].tolist() == [1.0, 0.0, 0.0] and merged["step"].tolist() == [7]
    with pytest.raises(ValueError, match="needs the base"):
        task_vector_median(experts, None, {})
