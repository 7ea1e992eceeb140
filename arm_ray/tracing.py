"""Trace one model at a time: load an expert or build a candidate, run the packs, return sums.

`Worker` holds the model sources (checkpoints opened once, weights streamed
tensor by tensor for every model) and is what a tracer actor wraps. The
pipeline sees a `TracingBackend`: `LocalTracing` runs a worker in this process
(the pipeline without Ray, for tests), `actors.tracer.RayTracing` a queue of
tracer actors.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Iterator, Mapping, Protocol, Sequence

import numpy as np
import torch

from arm_ray import checkpoints, pool
from arm_ray.architectures import mlp_names
from arm_ray.devices import DevicePlan, connect, resolve_dtype
from arm_ray.saliency import Packed, SaliencyTracer, TraceResult

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


@dataclass(frozen=True)
class TraceJob:
    model: str
    kind: str  # "expert" | "candidate"
    benchmarks: tuple[str, ...]
    expert: str | None = None  # for kind == "expert"
    recipe: pool.Recipe | None = None  # for kind == "candidate"


@dataclass
class Sources:
    """The pool's checkpoints, opened (headers only) once per actor; weights are read tensor by tensor.

    Nothing is cached: each model is streamed from its memory-mapped safetensors files (actors on one node share
    the page cache), so an actor holds the model it traces plus one tensor of each input, whatever the pool size.
    """

    base: str  # checkpoint paths (resolved)
    experts: dict[str, str]
    dtype: str = "float32"
    device: str = "cpu"  # "cpu" | "cuda": the tracer's device kind
    devices: tuple[str, ...] | None = None  # the config's trace.devices: one model split over these
    _open: dict = field(default_factory=dict, repr=False)

    def checkpoint(self, name: str) -> checkpoints.Checkpoint:
        if name not in self._open:
            self._open[name] = checkpoints.open_checkpoint(self.base if name == pool.BASE else self.experts[name],
                                                           name)
        return self._open[name]

    def plan(self) -> DevicePlan:
        return DevicePlan.for_actor(self.device, self.checkpoint(pool.BASE).config["num_hidden_layers"],
                                    self.devices)

    def reader(self, device_of: Callable[[str], str]) -> pool.Reader:
        """(model, tensor, rows) -> that tensor read from its checkpoint onto the device `device_of(tensor)`."""
        return lambda model, name, rows: self.checkpoint(model).read_tensor(name, device_of(name), rows)

    def tensors(self, job: "TraceJob", plan: DevicePlan) -> Iterator[tuple[str, torch.Tensor]]:
        """The job's model, tensor by tensor, each on the device the plan gives it (merged there)."""
        read = self.reader(plan.device_of)
        if job.kind == "expert":
            ck = self.checkpoint(job.expert)
            return ((name, read(job.expert, name, None)) for name in sorted(ck.tensors))
        return self.candidate(job.recipe, plan.device_of)

    def candidate(self, recipe: pool.Recipe, device_of: Callable[[str], str]) -> Iterator[tuple[str, torch.Tensor]]:
        """The candidate's tensors, each merged on (and left on) the device `device_of(tensor)`."""
        base = self.checkpoint(pool.BASE)
        for e in self.experts:
            self.checkpoint(e)
        return pool.stream(recipe, {n: t.shape for n, t in base.tensors.items()}, list(self.experts),
                           self.reader(device_of), base.row_bytes,
                           lambda name: pool.block_bytes(torch.device(device_of(name))))


def build_model(config_dir: str, tensors: Iterable[tuple[str, torch.Tensor]], plan: DevicePlan, dtype: str):
    """The model from a stream of tensors, each placed on its planned device as it arrives (no second copy).

    The skeleton is made on the meta device (no memory, no random init); each tensor then replaces its meta
    parameter. Non-persistent buffers (the rotary table) are made by transformers' own initialiser.
    """
    from transformers import AutoConfig, AutoModelForCausalLM

    cfg = AutoConfig.from_pretrained(config_dir)
    dtype = resolve_dtype(dtype, plan.devices[0])  # `fast`: what the first device computes natively
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(cfg, dtype=DTYPES[dtype])
    expected = dict(model.named_parameters(remove_duplicate=False))
    unexpected = []
    for name, t in tensors:
        if name not in expected:
            unexpected.append(name)
            continue
        model.load_state_dict({name: t.to(DTYPES[dtype])}, strict=False, assign=True)
        del t
    model.tie_weights()
    missing = [n for n, p in model.named_parameters() if p.is_meta and "lm_head" not in n]
    if unexpected or missing:
        raise RuntimeError(f"the weights do not fit the model: missing {missing[:3]}, unexpected {unexpected[:3]}")
    for mod_name, module in model.named_modules():
        if any(b.is_meta for b in module.buffers(recurse=False)):
            module.to_empty(device=plan.device_of(mod_name), recurse=False)
            model._init_weights(module)  # recomputes the rotary inv_freq (the only such buffer in our models)
    return model.eval()


def instantiate(config_dir: str, state_dict: Mapping[str, torch.Tensor], device: str, dtype: str):
    """A model from a state dict in memory, on one device."""
    cfg_layers = json.loads((Path(config_dir) / "config.json").read_text())["num_hidden_layers"]
    return build_model(config_dir, sorted(state_dict.items()), DevicePlan((device,), cfg_layers), dtype)


class Worker:
    def __init__(self, sources: Sources, torch_threads: int | None = None):
        if torch_threads:
            torch.set_num_threads(torch_threads)
        self.sources = sources

    def trace(self, job: TraceJob, packed: Mapping[str, Packed],
              progress: Callable[[int], None] | None = None) -> TraceResult:
        s = self.sources
        plan = s.plan()
        model = build_model(s.base, s.tensors(job, plan), plan, s.dtype)
        cfg = model.config
        names = mlp_names(cfg.model_type)
        groups, sums, n_traj, n_tok = [], [], [], []
        handles = connect(getattr(model, model.base_model_prefix), plan) if plan.split else []
        try:
            for b in job.benchmarks:
                p = packed[b]
                tracer = SaliencyTracer(model, names, cfg.num_hidden_layers, cfg.intermediate_size, len(p.groups))
                sums.append(tracer.run(p.packs, progress))
                groups += p.groups
                n_traj += p.n_trajectories
                n_tok += p.n_tokens
        finally:
            for h in handles:
                h.remove()
        del model
        return TraceResult(job.model, job.kind, groups, np.concatenate(sums, axis=1), n_traj, n_tok)

    def importance(self, packed: Mapping[str, Packed], out: str) -> None:
        """AIM's input importance of the base on every benchmark's calibration packs, written to `out`."""
        from arm_ray import aim

        s = self.sources
        plan = s.plan()
        base = TraceJob(pool.BASE, "expert", (), expert=pool.BASE)
        model = build_model(s.base, s.tensors(base, plan), plan, s.dtype)
        handles = connect(getattr(model, model.base_model_prefix), plan) if plan.split else []
        try:
            a = aim.importance(model, [k for b in sorted(packed) for k in packed[b].packs])
        finally:
            for h in handles:
                h.remove()
        del model
        checkpoints.write_tensor_file(Path(out), a)

    def write_candidate(self, recipe: pool.Recipe, out: str, max_shard_bytes: int, readme: str | None,
                        overwrite: bool = False) -> None:
        s = self.sources
        base = s.checkpoint(pool.BASE)
        checkpoints.write_tensors(s.candidate(recipe, lambda name: s.device), base, Path(out), max_shard_bytes, readme,
                                  overwrite=overwrite)


class TracingBackend(Protocol):
    def trace(self, jobs: Sequence[TraceJob], packed: Mapping[str, Packed],
              on_done: Callable[[TraceResult], None] | None = None) -> list[TraceResult]:
        """Every job's sums, in any order; `on_done` gets each as it finishes."""

    def write_candidate(self, recipe: pool.Recipe, out: str, max_shard_bytes: int, readme: str | None,
                        overwrite: bool = False) -> None:
        """Build the candidate `recipe` and write it as a checkpoint to `out`."""

    def importance(self, packed: Mapping[str, Packed], out: str) -> None:
        """AIM's input importance of the base on the calibration packs, as a tensor file at `out`."""

    def shutdown(self) -> None: ...


class LocalTracing:
    """Runs every job in this process, one after another."""

    def __init__(self, sources: Sources, torch_threads: int | None = None):
        self.worker = Worker(sources, torch_threads)

    def trace(self, jobs: Sequence[TraceJob], packed: Mapping[str, Packed],
              on_done: Callable[[TraceResult], None] | None = None) -> list[TraceResult]:
        out = []
        for job in jobs:
            out.append(self.worker.trace(job, packed))
            if on_done:
                on_done(out[-1])
        return out

    def write_candidate(self, recipe, out, max_shard_bytes, readme, overwrite=False):
        self.worker.write_candidate(recipe, out, max_shard_bytes, readme, overwrite)

    def importance(self, packed, out):
        self.worker.importance(packed, out)

    def shutdown(self) -> None:
        pass
