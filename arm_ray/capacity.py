"""Refuse resource requests the cluster can never satisfy, before any actor is made (Ray would wait forever).

Every actor of a run lives at once: the coordinator, the tracers (they also
write candidates for the results table) and, with `evaluation`, the rollout
actors. Each must fit on some node, and together they must fit the cluster.
"""

from __future__ import annotations

from arm_ray.errors import ConfigError


def asks(r, evaluation: bool) -> list[tuple[str, str, int, dict[str, float]]]:
    """(field, actor, count, {"CPU": each, "GPU": each}) of every group of actors the run makes."""
    out = [("resources.coordinator_num_cpus", "coordinator", 1, {"CPU": r.coordinator_num_cpus, "GPU": 0.0}),
           ("resources.tracers", "tracer", r.tracers, {"CPU": r.tracer_num_cpus, "GPU": r.tracer_num_gpus})]
    if evaluation:
        out.append(("resources.rollout_actors", "rollout", r.rollout_actors,
                    {"CPU": r.rollout_num_cpus, "GPU": r.rollout_num_gpus}))
    return out


def check(r, evaluation: bool, nodes: list[dict[str, float]]) -> None:
    """`nodes`: each alive node's total resources ({"CPU": .., "GPU": ..}), as `ray.nodes()` reports them."""
    have = "; ".join(f"node {i}: {n.get('CPU', 0):g} CPU, {n.get('GPU', 0):g} GPU" for i, n in enumerate(nodes))
    groups = asks(r, evaluation)
    for field, actor, _, each in groups:
        if not any(all(n.get(k, 0) >= v for k, v in each.items()) for n in nodes):
            raise ConfigError(f"{field}: each {actor} actor asks {each['CPU']:g} CPU and {each['GPU']:g} GPU, "
                              f"which no node has ({have})")
    for kind in ("CPU", "GPU"):
        total = sum(n.get(kind, 0) for n in nodes)
        wanted = sum(count * each[kind] for _, _, count, each in groups)
        if wanted > total + 1e-9:
            parts = " + ".join(f"{count} x {each[kind]:g} ({field})" for field, _, count, each in groups if each[kind])
            raise ConfigError(f"resources: the run's actors, all alive at once, ask {wanted:g} {kind} "
                              f"({parts}); the cluster has {total:g} ({have}). Lower the counts or use "
                              f"fractional {kind}s")
