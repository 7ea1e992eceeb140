"""Device plans: contiguous runs of layers per device, balanced, and tensors streamed to their device."""

import pytest
import torch

from arm_ray.devices import DevicePlan


def test_layers_split_into_contiguous_balanced_runs():
    plan = DevicePlan(("cuda:0", "cuda:1", "cuda:2"), 36)
    assert [plan.layers_on(i) for i in range(3)] == [range(0, 12), range(12, 24), range(24, 36)]
    assert plan.device_of("model.layers.11.mlp.down_proj.weight") == "cuda:0"
    assert plan.device_of("model.layers.12.self_attn.q_proj.weight") == "cuda:1"
    assert plan.device_of("model.embed_tokens.weight") == "cuda:0" and plan.device_of("model.norm.weight") == "cuda:0"
    assert plan.device_of("lm_head.weight") == "cuda:0" and plan.split
    assert not DevicePlan(("cpu",), 4).split
    with pytest.raises(ValueError, match="3 devices for 2 layers"):
        DevicePlan(("a", "b", "c"), 2)


def test_a_qwen3_8b_shaped_plan_on_the_meta_device():
    """Without allocating a byte: the bytes each of 2 and 4 GPUs would hold for a Qwen3-8B-shaped model in bf16."""
    from transformers import AutoModelForCausalLM, Qwen3Config

    from arm_ray.toy.random_pool import QWEN3_8B

    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(Qwen3Config(**QWEN3_8B), dtype=torch.bfloat16)
    sizes = {n: p.numel() * 2 for n, p in model.named_parameters()}
    total = sum(sizes.values())
    assert 16.0e9 < total < 16.6e9  # 8.2 B parameters
    for n in (2, 4):
        per = DevicePlan(tuple(f"cuda:{i}" for i in range(n)), 36).bytes_per_device(sizes)
        assert sum(per) == total
        # the first device also holds the embedding and head (2.5 GB): no device holds more than its share + that
        assert max(per) <= total / n + 2 * 151936 * 4096 * 2 and min(per) >= 0.8 * (total - 2.5e9) / n


def test_for_actor_defaults():
    assert DevicePlan.for_actor("cpu", 4).devices == ("cpu",)
    assert DevicePlan.for_actor("cpu", 4, ("cpu", "cpu")).devices == ("cpu", "cpu")


AVX2_EPYC = "processor\t: 0\nvendor_id\t: AuthenticAMD\nflags\t\t: fpu sse2 avx avx2 fma bmi2\n"
SAPPHIRE_RAPIDS = "processor\t: 0\nflags\t\t: fpu avx2 avx512f avx512_bf16 amx_bf16 amx_tile\n"


def test_cpu_bf16_is_read_from_the_flags():
    from arm_ray.devices import cpu_flags, cpu_has_bf16

    assert "avx2" in cpu_flags(AVX2_EPYC) and not cpu_has_bf16(AVX2_EPYC)
    assert cpu_has_bf16(SAPPHIRE_RAPIDS)
    assert cpu_flags("no flags line here") == set() and not cpu_has_bf16("")


def test_fast_resolves_to_what_this_cpu_computes_and_other_dtypes_stay():
    from pathlib import Path

    from arm_ray.devices import cpu_has_bf16, resolve_dtype

    info = Path("/proc/cpuinfo")
    native = info.is_file() and any(f in info.read_text().split() for f in ("amx_bf16", "avx512_bf16"))
    assert cpu_has_bf16() == native
    assert resolve_dtype("fast", "cpu") == ("bfloat16" if native else "float32")
    for d in ("float32", "bfloat16", "float16", "auto"):
        assert resolve_dtype(d, "cpu") == d


def test_explicit_bf16_on_a_cpu_without_it_is_warned_about(monkeypatch):
    from arm_ray import devices

    monkeypatch.setattr(devices, "cpu_has_bf16", lambda cpuinfo=None: False)
    warning = devices.slow_bf16_warning("trace.dtype", "bfloat16", on_cpu=True)
    assert warning.startswith("trace.dtype: bfloat16 on this CPU") and "dtype: fast" in warning
    assert devices.slow_bf16_warning("trace.dtype", "bfloat16", on_cpu=False) is None  # a GPU computes it
    assert devices.slow_bf16_warning("trace.dtype", "fast", on_cpu=True) is None
    monkeypatch.setattr(devices, "cpu_has_bf16", lambda cpuinfo=None: True)
    assert devices.slow_bf16_warning("trace.dtype", "bfloat16", on_cpu=True) is None
