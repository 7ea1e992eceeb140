"""The tracer's models are streamed from the checkpoints, tensor by tensor: the same model, the same sums."""

import hashlib

import numpy as np
import pytest
import torch

from tests.conftest import tiny_config

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


@pytest.fixture(scope="module")
def ctx(perturbed_pool):
    from arm_ray.config import parse_config
    from arm_ray.prepare import prepare

    return prepare(parse_config(tiny_config(perturbed_pool)))


def _sources(ctx, device="cpu", devices=None, dtype="float32"):
    from arm_ray.tracing import Sources

    return Sources(str(ctx.base.path), {n: str(c.path) for n, c in ctx.experts.items()}, dtype, device, devices)


def _trace_model(model, ctx, benchmarks):
    from arm_ray.architectures import mlp_names
    from arm_ray.saliency import SaliencyTracer

    cfg = model.config
    return np.concatenate([SaliencyTracer(model, mlp_names(cfg.model_type), cfg.num_hidden_layers,
                                          cfg.intermediate_size, len(ctx.packed[b].groups)).run(ctx.packed[b].packs)
                           for b in benchmarks], axis=1)


def test_streamed_expert_traces_like_from_pretrained(ctx):
    from transformers import AutoModelForCausalLM

    from arm_ray.pipeline import trace_jobs
    from arm_ray.tracing import Worker

    job = trace_jobs(ctx)[0]
    got = Worker(_sources(ctx)).trace(job, ctx.packed).sums
    ref = AutoModelForCausalLM.from_pretrained(ctx.experts[job.expert].path, dtype=torch.float32).eval()
    assert np.array_equal(got, _trace_model(ref, ctx, job.benchmarks))


def test_streamed_candidate_traces_like_a_model_loaded_from_the_merged_state_dict(ctx):
    from transformers import AutoConfig, AutoModelForCausalLM

    from arm_ray import pool
    from arm_ray.pipeline import trace_jobs
    from arm_ray.tracing import Worker

    job = next(j for j in trace_jobs(ctx) if j.kind == "candidate" and j.recipe.method == "ties")
    got = Worker(_sources(ctx)).trace(job, ctx.packed).sums
    sd = pool.build(job.recipe, {e: c.load_state_dict() for e, c in ctx.experts.items()}, ctx.base.load_state_dict())
    model = AutoModelForCausalLM.from_config(AutoConfig.from_pretrained(ctx.base.path), dtype=torch.float32)
    model.load_state_dict(sd, strict=False)
    assert np.array_equal(got, _trace_model(model.eval(), ctx, job.benchmarks))


@pytest.mark.parametrize("device", DEVICES)
def test_tracing_twice_gives_the_same_bits(ctx, device):
    """The sums grow by a matrix product, not by atomics: the same bits on every run (on CUDA too)."""
    from arm_ray.pipeline import trace_jobs
    from arm_ray.tracing import Worker

    worker = Worker(_sources(ctx, device, dtype="bfloat16" if device == "cuda" else "float32"))
    for job in trace_jobs(ctx)[:1] + [j for j in trace_jobs(ctx) if j.kind == "candidate"][:1]:
        a, b = worker.trace(job, ctx.packed).sums, worker.trace(job, ctx.packed).sums
        assert a.dtype == np.float32 and np.array_equal(a, b)


def test_a_model_split_over_two_devices_gives_the_same_sums(ctx):
    """trace.devices: the layers in two runs with hooks carrying the hidden states across (two CPU "devices"
    here; on a GPU machine scripts/gpu_check.py splits over cuda:0 and the CPU)."""
    from arm_ray.pipeline import trace_jobs
    from arm_ray.tracing import Worker

    job = trace_jobs(ctx)[0]
    split = _sources(ctx, devices=("cpu", "cpu"))
    assert split.plan().split and split.plan().layer_device(0) == "cpu"
    assert np.array_equal(Worker(split).trace(job, ctx.packed).sums, Worker(_sources(ctx)).trace(job, ctx.packed).sums)


def test_write_candidate_streams_the_same_files_as_a_merge_in_memory(ctx, tmp_path):
    from arm_ray import checkpoints, pool
    from arm_ray.tracing import Worker

    recipe = next(r for r in ctx.recipes if r.method == "dare_ties")
    Worker(_sources(ctx)).write_candidate(recipe, str(tmp_path / "streamed"), 1 << 20, None)
    sd = pool.build(recipe, {e: c.load_state_dict() for e, c in ctx.experts.items()}, ctx.base.load_state_dict())
    checkpoints.write_state_dict(sd, tmp_path / "memory", ctx.base, 1 << 20)
    files = sorted(p.name for p in (tmp_path / "memory").iterdir())
    assert files == sorted(p.name for p in (tmp_path / "streamed").iterdir()) and len(files) > 3  # sharded
    for f in files:
        digest = [hashlib.sha256((tmp_path / d / f).read_bytes()).hexdigest() for d in ("memory", "streamed")]
        assert digest[0] == digest[1], f


def test_a_nan_in_an_expert_is_named_when_streamed(ctx, tmp_path):
    from safetensors.torch import load_file, save_file

    from arm_ray.errors import CheckpointError
    from arm_ray.pipeline import trace_jobs
    from arm_ray.tracing import Sources, Worker
    from tests.conftest import copy_checkpoint

    job = trace_jobs(ctx)[0]
    bad = copy_checkpoint(ctx.experts[job.expert].path, tmp_path / "bad")
    f = bad / "model.safetensors"
    sd = load_file(f)
    sd["model.layers.1.mlp.up_proj.weight"][3, 5] = float("nan")
    save_file(sd, f)
    sources = Sources(str(ctx.base.path), {job.expert: str(bad)}, "float32", "cpu")
    with pytest.raises(CheckpointError, match=r"tensor model.layers.1.mlp.up_proj.weight .* holds 1 NaN"):
        Worker(sources).trace(job, ctx.packed)
