"""Refuse resource requests the cluster can never satisfy, before any actor is made (Ray would wait forever).

Every actor of a run lives at once: the coordinator, the tracers (they also
write candidates for the results table) and, with `evaluation`, the rollout
actors. Each must fit on some node, and together they must fit the cluster.
"""

from __future__ import annotations

from arm_ray.errors import ConfigError


def asks(r, evaluation: bool) -> list[tuple[str, str, int, float, float]]:
    """(field, actor, count, CPUs each, GPUs each) of every group of actors the run makes."""
    out = [("resources.coordinator_num_cpus", "coordinator", 1, r.coordinator_num_cpus, 0.0),
           ("resources.tracers", "tracer", r.tracers, r.tracer_num_cpus, r.tracer_num_gpus)]
    if evaluation:
        out.append(("resources.rollout_actors", "rollout", r.rollout_actors, r.rollout_num_cpus,
                    r.rollout_num_gpus))
    return out


def check(r, evaluation: bool, nodes: list[dict[str, float]]) -> None:
    """`nodes`: each alive node's total resources ({"CPU": .., "GPU": ..}), as `ray.nodes()` reports them."""
    have = "; ".join(f"node {i}: {n.get('CPU', 0):g} CPU, {n.get('GPU', 0):g} GPU" for i, n in enumerate(nodes))
    groups = asks(r, evaluation)
    for field, actor, _, cpu, gpu in groups:
        if not any(n.get("CPU", 0) >= cpu and n.get("GPU", 0) >= gpu for n in nodes):
            raise ConfigError(f"{field}: each {actor} actor asks {cpu:g} CPU and {gpu:g} GPU, which no node has "
                              f"({have})")
    for kind in ("CPU", "GPU"):
        total = sum(n.get(kind, 0) for n in nodes)
        wanted = sum(count * (cpu if kind == "CPU" else gpu) for _, _, count, cpu, gpu in groups)
        if wanted > total + 1e-9:
            parts = " + ".join(f"{count} x {cpu if kind == 'CPU' else gpu:g} ({field})"
                               for field, _, count, cpu, gpu in groups if (cpu if kind == "CPU" else gpu))
            raise ConfigError(f"resources: the run's actors, all alive at once, ask {wanted:g} {kind} "
                              f"({parts}); the cluster has {total:g} ({have}). Lower the counts or use "
                              f"fractional {kind}s")
