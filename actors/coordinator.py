"""The coordinator actor: runs the ARM recipe (`arm_ray.pipeline.run`) and owns the run directory.

It makes the tracer and rollout actors the recipe asks for and shuts them down when it ends.
"""

from __future__ import annotations

from pathlib import Path

import ray

from actors.rollout import RayRollouts
from actors.tracer import RayTracing
from arm_ray import logs, pipeline
from arm_ray.config import parse_config


@ray.remote
class Coordinator:
    def run(self, config: dict, out: str, overwrite: bool = False, resume: bool = False) -> dict:
        from ray.experimental.tqdm_ray import tqdm

        logs.setup()
        cfg = parse_config(config)
        backends = []

        def tracing(ctx):
            device = "cuda" if cfg.resources.tracer_num_gpus > 0 else "cpu"
            backends.append(RayTracing(ctx.sources(device), cfg.resources, len(pipeline.trace_jobs(ctx))))
            return backends[-1]

        def rollouts(cfg):
            backends.append(RayRollouts(cfg.evaluation.engine.model_dump(), cfg.resources, cfg.seed))
            return backends[-1]

        try:
            return pipeline.run(cfg, Path(out), tracing, rollouts, overwrite=overwrite, progress=tqdm,
                                resume=resume)
        finally:
            for b in backends:
                b.shutdown()
