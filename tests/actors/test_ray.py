"""Real Ray actors: the tracer queue and the coordinator, on a local instance."""

import numpy as np
import pytest

from arm_ray import pipeline
from arm_ray.config import Resources, parse_config
from arm_ray.prepare import prepare
from tests.conftest import tiny_config

pytestmark = pytest.mark.ray


def test_saliency_does_not_depend_on_actor_count(ray_local, perturbed_pool):
    from actors.tracer import RayTracing

    ctx = prepare(parse_config(tiny_config(perturbed_pool)))
    jobs = pipeline.trace_jobs(ctx)
    runs = {}
    for n in (1, 3):
        backend = RayTracing(ctx.sources("cpu"), Resources(tracers=n, tracer_num_cpus=0.25, torch_threads=1),
                             len(jobs))
        assert len(backend.actors) == n
        runs[n] = {r.model: r for r in backend.trace(jobs, ctx.packed)}
        backend.shutdown()
    assert set(runs[1]) == {j.model for j in jobs}
    for model, r in runs[1].items():
        assert runs[3][model].groups == r.groups and runs[3][model].n_tokens == r.n_tokens
        np.testing.assert_allclose(runs[3][model].sums, r.sums, rtol=1e-6, atol=0)


def test_coordinator_actor_runs_the_recipe(ray_local, perturbed_pool, tmp_path):
    from actors.coordinator import Coordinator

    cfg = tiny_config(perturbed_pool)
    cfg["resources"]["tracers"] = 2
    report = ray_local.get(Coordinator.options(num_cpus=0.1).remote().run.remote(cfg, str(tmp_path / "run")))
    assert (tmp_path / "run" / "model" / "model.safetensors").is_file()
    assert report["selected"] in {"average", "ties", "dare_ties"}
