import os
import shutil
from pathlib import Path

import pytest

os.environ.setdefault("RAY_AUTH_MODE", "disabled")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

TINY_SHAPE = dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=2,
                  num_key_value_heads=1, head_dim=32)


@pytest.fixture(scope="session")
def tiny_pool(tmp_path_factory) -> Path:
    """A tiny Qwen3 pool (base, three experts, tokenizer, calibration), built once per session."""
    from arm_ray.demo import build_demo_pool

    return build_demo_pool(str(tmp_path_factory.mktemp("pool") / "pool"), seed=0, n_calibration=6,
                           shape=TINY_SHAPE)


@pytest.fixture(scope="session")
def tokenizer(tiny_pool):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tiny_pool / "tokenizer")


@pytest.fixture(scope="session")
def toy_pool(tmp_path_factory) -> Path:
    """The trained toy pool, `tests` preset: the real build (oracle data, tokenizer, training, scoring), fast."""
    from arm_ray.world.toy_pool import build_toy_pool

    return build_toy_pool(tmp_path_factory.mktemp("toy") / "pool", "tests", log=lambda s: None)


def tiny_config(pool: Path, **over) -> dict:
    cfg = {
        "name": "tiny",
        "base": {"path": str(pool / "base")},
        "experts": {"tau": {"path": str(pool / "expert_tau_bench")},
                    "office": {"path": str(pool / "expert_officebench")},
                    "os": {"path": str(pool / "expert_agentbench_os")}},
        "benchmarks": {"tau_bench": {"expert": "tau"}, "officebench": {"expert": "office"},
                       "agentbench_os": {"expert": "os"}},
        "calibration": {"files": [{"path": str(pool / "calibration" / f"{b}.jsonl")}
                                  for b in ("tau_bench", "officebench", "agentbench_os")],
                        "max_length": 1024},
        "operators": [{"name": "average", "method": "linear", "parameters": {"weight": 1.0}},
                      {"name": "ties", "method": "ties", "parameters": {"weight": 1.0, "density": 0.5}},
                      {"name": "dare_ties", "method": "dare_ties", "parameters": {"weight": 1.0, "density": 0.5}}],
        "k": 0.1,
        "weak": {"benchmarks": ["officebench", "agentbench_os"]},
        "save_backbone": True,
        "resources": {"tracers": 1, "tracer_num_cpus": 0.25, "coordinator_num_cpus": 0.1, "torch_threads": 1},
        "trace": {"max_tokens_per_batch": 1024},
    }
    cfg.update(over)
    return cfg


def copy_checkpoint(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst
