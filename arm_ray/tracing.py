"""Trace one model at a time: load an expert or build a candidate, run the packs, return sums.

`Worker` holds the model sources (with a cache of state dicts, so a pool of
candidates reads each expert once) and is what a tracer actor wraps. The
pipeline sees a `TracingBackend`: `LocalTracing` runs a worker in this process
(the pipeline without Ray, for tests), `actors.tracer.RayTracing` a queue of
tracer actors.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Mapping, Protocol, Sequence

import numpy as np
import torch

from arm_ray import checkpoints, pool
from arm_ray.architectures import mlp_names
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
    base: str  # checkpoint paths (resolved)
    experts: dict[str, str]
    dtype: str = "float32"
    device: str = "cpu"
    _cache: dict = field(default_factory=dict, repr=False)

    def state_dict(self, name: str) -> dict[str, torch.Tensor]:
        if name not in self._cache:
            path = self.base if name == pool.BASE else self.experts[name]
            self._cache[name] = checkpoints.open_checkpoint(path, name).load_state_dict()
        return self._cache[name]

    def candidate(self, recipe: pool.Recipe) -> dict[str, torch.Tensor]:
        experts = {e: self.state_dict(e) for e in self.experts}
        base = self.state_dict(pool.BASE) if pool.uses_base(recipe.method) else None
        return pool.build(recipe, experts, base)


def instantiate(config_dir: str, state_dict: Mapping[str, torch.Tensor], device: str, dtype: str):
    from transformers import AutoConfig, AutoModelForCausalLM

    cfg = AutoConfig.from_pretrained(config_dir)
    with torch.device(device):
        model = AutoModelForCausalLM.from_config(cfg, dtype=DTYPES[dtype])
    missing, unexpected = model.load_state_dict(dict(state_dict), strict=False)
    if unexpected or [m for m in missing if "lm_head" not in m]:
        raise RuntimeError(f"state dict does not fit the model: missing {missing[:3]}, unexpected {unexpected[:3]}")
    return model.eval()


class Worker:
    def __init__(self, sources: Sources, torch_threads: int | None = None):
        if torch_threads:
            torch.set_num_threads(torch_threads)
        self.sources = sources

    def trace(self, job: TraceJob, packed: Mapping[str, Packed],
              progress: Callable[[int], None] | None = None) -> TraceResult:
        s = self.sources
        sd = s.state_dict(job.expert) if job.kind == "expert" else s.candidate(job.recipe)
        model = instantiate(s.base, sd, s.device, s.dtype)
        cfg = model.config
        names = mlp_names(cfg.model_type)
        groups, sums, n_traj, n_tok = [], [], [], []
        for b in job.benchmarks:
            p = packed[b]
            tracer = SaliencyTracer(model, names, cfg.num_hidden_layers, cfg.intermediate_size, len(p.groups))
            sums.append(tracer.run(p.packs, progress))
            groups += p.groups
            n_traj += p.n_trajectories
            n_tok += p.n_tokens
        del model
        return TraceResult(job.model, job.kind, groups, np.concatenate(sums, axis=1), n_traj, n_tok)

    def write_candidate(self, recipe: pool.Recipe, out: str, max_shard_bytes: int, readme: str | None,
                        overwrite: bool = False) -> None:
        sd = self.sources.candidate(recipe)
        base = checkpoints.open_checkpoint(self.sources.base, "base")
        checkpoints.write_state_dict(sd, Path(out), base, max_shard_bytes, readme, overwrite=overwrite)


class TracingBackend(Protocol):
    def trace(self, jobs: Sequence[TraceJob], packed: Mapping[str, Packed],
              on_done: Callable[[TraceResult], None] | None = None) -> list[TraceResult]:
        """Every job's sums, in any order; `on_done` gets each as it finishes."""

    def write_candidate(self, recipe: pool.Recipe, out: str, max_shard_bytes: int, readme: str | None,
                        overwrite: bool = False) -> None:
        """Build the candidate `recipe` and write it as a checkpoint to `out`."""

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

    def shutdown(self) -> None:
        pass
