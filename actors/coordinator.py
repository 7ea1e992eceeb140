"""The coordinator actor: runs the ARM recipe (`arm_ray.pipeline.run`) and owns the run directory; and the
analyst actor, which measures the paper's findings on a finished run (`arm_ray.analysis_pipeline.analyze`).

Each makes the tracer and rollout actors its recipe asks for and shuts them down when it ends.
"""

from __future__ import annotations

from pathlib import Path

import ray

from actors.rollout import RayRollouts
from actors.tracer import RayTracing
from arm_ray import logs, pipeline
from arm_ray.config import RunConfig, parse_config


class Backends:
    """Factories of the run's tracer and rollout actor groups, and the groups they made."""

    def __init__(self, cfg: RunConfig, log_dir: Path | None = None):
        self.cfg, self.made, self.log_dir = cfg, [], log_dir

    def tracing(self, ctx):
        device = "cuda" if self.cfg.resources.tracer_num_gpus > 0 else "cpu"
        self.made.append(RayTracing(ctx.sources(device), self.cfg.resources, len(pipeline.trace_jobs(ctx))))
        return self.made[-1]

    def rollouts(self, cfg):
        self.made.append(RayRollouts(cfg.evaluation.engine.model_dump(), cfg.resources, cfg.seed,
                                     str(self.log_dir) if self.log_dir else None))
        return self.made[-1]

    def shutdown(self) -> None:
        for b in self.made:
            b.shutdown()


@ray.remote
class Coordinator:
    def run(self, config: dict, out: str, overwrite: bool = False, resume: bool = False,
            verbose: bool = False) -> dict:
        """`verbose`: the engines' output on the console; otherwise in `out/logs/`."""
        from ray.experimental.tqdm_ray import tqdm

        logs.setup()
        cfg = parse_config(config)
        backends = Backends(cfg, None if verbose else Path(out) / pipeline.LOG_DIR)
        try:
            return pipeline.run(cfg, Path(out), backends.tracing, backends.rollouts, overwrite=overwrite,
                                progress=tqdm, resume=resume)
        finally:
            backends.shutdown()


@ray.remote
class Analyst:
    def analyze(self, run_dir: str, options: dict, verbose: bool = False) -> dict:
        from ray.experimental.tqdm_ray import tqdm

        from arm_ray.analysis_pipeline import Options, analyze, run_config

        logs.setup()
        backends = Backends(run_config(Path(run_dir)), None if verbose else Path(run_dir) / pipeline.LOG_DIR)
        try:
            return analyze(Path(run_dir), Options(**options), backends.tracing, backends.rollouts, progress=tqdm)
        finally:
            backends.shutdown()
