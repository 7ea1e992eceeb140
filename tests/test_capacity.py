"""Resource requests a cluster can never satisfy are refused before any actor exists."""

import pytest

from arm_ray import capacity
from arm_ray.config import Resources
from arm_ray.errors import ConfigError

TWO_CORES = [{"CPU": 2.0}]


def test_the_demo_and_quick_asks_fit_two_cores_and_one_more_actor_does_not():
    demo = Resources(rollout_actors=2, rollout_num_cpus=0.4, tracers=2, tracer_num_cpus=0.5,
                     coordinator_num_cpus=0.1)
    # what every actor asks, all alive at once: 0.1 + 2 x 0.5 + 2 x 0.4 = 1.9 CPUs of 2
    assert sum(n * each["CPU"] for _, _, n, each in capacity.asks(demo, True)) == pytest.approx(1.9)
    assert sum(n * each["CPU"] for _, _, n, each in capacity.asks(demo, False)) == pytest.approx(1.1)
    capacity.check(demo, True, TWO_CORES)  # fits: no error
    with pytest.raises(ConfigError, match=r"ask 2\.3 CPU .*the cluster has 2"):
        capacity.check(demo.model_copy(update={"rollout_actors": 3}), True, TWO_CORES)
    capacity.check(demo.model_copy(update={"rollout_actors": 3}), False, TWO_CORES)  # no rollouts: no rollout actors


def test_a_gpu_no_node_has():
    with pytest.raises(ConfigError, match=r"^resources\.tracers: each tracer actor asks 1 CPU and 1 GPU, which no "
                                          r"node has \(node 0: 2 CPU, 0 GPU\)"):
        capacity.check(Resources(tracer_num_gpus=1), False, TWO_CORES)


def test_more_actors_than_the_cluster_holds():
    # 8 tracers x 1 CPU on 2 cores: two traced, the rest waited forever
    with pytest.raises(ConfigError, match=r"ask 8\.1 CPU \(1 x 0\.1 \(resources\.coordinator_num_cpus\) \+ 8 x 1 "
                                          r"\(resources\.tracers\)\); the cluster has 2"):
        capacity.check(Resources(tracers=8, tracer_num_cpus=1), False, TWO_CORES)
    with pytest.raises(ConfigError, match=r"resources\.rollout_actors\)\); the cluster has 2"):
        capacity.check(Resources(tracers=1, tracer_num_cpus=1, rollout_actors=2, rollout_num_cpus=0.5), True,
                       TWO_CORES)
    # the same asks fit two nodes
    capacity.check(Resources(tracers=1, tracer_num_cpus=1, rollout_actors=2, rollout_num_cpus=0.5), True,
                   TWO_CORES * 2)
