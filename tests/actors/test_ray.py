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


def test_coordinator_reports_where_each_actor_ran(ray_local, perturbed_pool, tmp_path):
    from actors.coordinator import Coordinator

    cfg = tiny_config(perturbed_pool)
    cfg["resources"]["tracers"] = 2
    report = ray_local.get(Coordinator.options(num_cpus=0.1).remote().run.remote(cfg, str(tmp_path / "run")))
    where = report["placement"]
    assert [p["actor"] for p in where] == ["tracer", "tracer"] and len({p["pid"] for p in where}) == 2
    assert {p["node_id"] for p in where} == {ray_local.get_runtime_context().get_node_id()}


def test_actor_group_reserves_a_placement_group_per_actor(ray_local):
    """The multi-GPU engine path on CPU: each actor of a group gets its own placement group of `bundles` (one
    node), runs in bundle 0, and what it starts is scheduled inside the group; shutdown frees the groups."""
    from ray.util import placement_group_table

    from actors.group import ActorGroup, Placed

    @ray_local.remote
    def child():
        return ray_local.util.get_current_placement_group().id.hex()

    @ray_local.remote
    class Engine(Placed):
        def inside(self):
            pg = ray_local.util.get_current_placement_group()
            return pg.id.hex(), pg.bundle_specs, ray_local.get(child.options(num_cpus=0.1).remote())

    bundles = [{"CPU": 0.2}, {"CPU": 0.2}]
    group = ActorGroup(Engine, 2, {"num_cpus": 0.1}, start_timeout_s=60, what="engine", bundles=bundles)
    try:
        seen = ray_local.get([a.inside.remote() for a in group.actors])
        assert len({pg for pg, _, _ in seen}) == 2  # one group per actor
        for pg, specs, child_pg in seen:
            assert specs == bundles and child_pg == pg  # the actor's own tasks stay in its group
        assert [p["actor"] for p in group.placement()] == ["engine", "engine"]
        ids = [g.id.hex() for g in group.groups]
    finally:
        group.shutdown()
    assert all(placement_group_table()[i]["state"] == "REMOVED" for i in ids)


def test_a_placement_group_that_cannot_be_placed_is_a_clear_error(ray_local):
    from actors.group import ActorGroup, Placed
    from arm_ray.errors import ConfigError

    @ray_local.remote
    class Engine(Placed):
        pass

    with pytest.raises(ConfigError, match=r"placement groups for engine actors \(2 bundles of \{'GPU': 1\}"):
        ActorGroup(Engine, 1, {"num_cpus": 0}, start_timeout_s=2, what="engine", bundles=[{"GPU": 1}] * 2)
