"""A killed tracer or rollout actor: Ray starts it again, its unfinished job runs again, the outputs are the same."""

import hashlib
import os
import signal
import threading
import time

import psutil
import pytest

from arm_ray.config import Engine, Resources
from arm_ray.rollout.run import SuiteRun
from tests.conftest import tiny_config

pytestmark = [pytest.mark.ray, pytest.mark.slow]


def kill_when_busy(title: str, timeout: float = 120.0) -> dict:
    """In the background: SIGKILL the first process whose title shows it running `title` (e.g. an actor's
    method, which Ray puts in the process title while it runs); `result["pid"]` once done."""
    result = {}

    def watch():
        deadline = time.time() + timeout
        while time.time() < deadline:
            for p in psutil.process_iter(["pid", "cmdline"]):
                if any(title in part for part in (p.info["cmdline"] or [])):
                    time.sleep(0.3)  # well inside the call
                    os.kill(p.info["pid"], signal.SIGKILL)
                    result["pid"] = p.info["pid"]
                    return
            time.sleep(0.05)

    thread = threading.Thread(target=watch, daemon=True)
    thread.start()
    result["thread"] = thread
    return result


def digests(out):
    """The run's model, backbone and saliency, byte for byte (report files hold timings)."""
    files = [out / "saliency.parquet", *sorted((out / "model").rglob("*")), *sorted((out / "backbone").rglob("*"))]
    return {p.relative_to(out).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest() for p in files if p.is_file()}


def test_a_killed_tracer_is_restarted_and_the_run_is_unchanged(ray_local, perturbed_pool, tmp_path):
    from actors.coordinator import Coordinator

    cfg = tiny_config(perturbed_pool)
    cfg["resources"] = {"tracers": 1, "tracer_num_cpus": 0.5, "coordinator_num_cpus": 0.1, "torch_threads": 1}
    outs = {}
    for name in ("killed", "calm"):
        killer = kill_when_busy("TracerActor.trace") if name == "killed" else None
        outs[name] = tmp_path / name
        ray_local.get(Coordinator.options(num_cpus=0.1).remote().run.remote(cfg, str(outs[name])))
        if killer:
            killer["thread"].join(timeout=1)
            assert "pid" in killer, "no tracer was seen tracing"
            assert not psutil.pid_exists(killer["pid"])
    assert len(digests(outs["calm"])) > 5 and digests(outs["killed"]) == digests(outs["calm"])


def test_a_killed_rollout_actor_is_restarted_and_its_episodes_run_again(ray_local, trained_pool):
    from actors.rollout import RayRollouts

    engine = Engine(dtype="float32", max_model_len=2048, cpu_kv_cache_gb=1).model_dump()
    sampled = {"temperature": 0.7, "top_p": 1.0, "max_new_tokens": 24}
    runs = [SuiteRun("retail", "retail", "dev", 12), SuiteRun("shell", "shell", "dev", 3)]
    rows = {}
    for name in ("killed", "calm"):
        killer = kill_when_busy("RolloutActor.evaluate") if name == "killed" else None
        b = RayRollouts(engine, Resources(rollout_actors=1, rollout_num_cpus=0.5), seed=0)
        try:
            rows[name] = sorted((r["task_id"], r["reward"], r["trajectory"]) for r in b.evaluate(
                {"expert_retail": str(trained_pool / "expert_retail")}, runs, {"retail": sampled, "shell": sampled}))
        finally:
            b.shutdown()
        if killer:
            killer["thread"].join(timeout=1)
            assert "pid" in killer, "no rollout actor was seen evaluating"
    assert len(rows["calm"]) == 15 and rows["killed"] == rows["calm"]


def test_actors_the_cluster_cannot_place_stop_the_run_after_the_timeout(ray_local):
    """On a cluster that may grow (`resources.autoscaling`), actors that never get placed end the run with a
    clear error after `actor_start_timeout_s`, instead of Ray's silent wait."""
    import ray

    from actors.group import ActorGroup
    from arm_ray.errors import ConfigError

    @ray.remote
    class Idle:
        def ping(self):
            return 1

    t0 = time.time()
    with pytest.raises(ConfigError, match=r"^resources: 1 of 3 tracer actors \(num_cpus=0\.9 each\) were not placed "
                                          r"within resources\.actor_start_timeout_s=3 s"):
        ActorGroup(Idle, 3, {"num_cpus": 0.9}, start_timeout_s=3, what="tracer")
    assert time.time() - t0 < 30
    group = ActorGroup(Idle, 2, {"num_cpus": 0.9}, start_timeout_s=30, what="tracer")  # room for two: fine
    assert group.map_unordered("ping", []) == [] and ray.get(group.actors[1].ping.remote()) == 1
    group.shutdown()
