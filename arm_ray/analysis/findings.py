"""The paper's findings as functions of a run's stored outputs: saliency, eval rows, the run's choices.

Pure numpy over what `arm_ray.analysis_pipeline` loads; nothing here traces, merges or rolls out. Each function returns
plain data for analysis.json, every number beside the count it rests on.
"""

from __future__ import annotations

from typing import Callable, Mapping, Sequence

import numpy as np

from arm_ray import selection, transplant
from arm_ray.analysis import stats
from arm_ray.evaluation import intervals
from arm_ray.saliency import TraceResult

Saliency = Mapping[tuple[str, str, str], np.ndarray]  # (model, benchmark, role) -> s [L, d_ff]
RESPONSE = "response"


def salient_sets(saliency: Saliency, model: str, benchmarks: Sequence[str], role_of: Callable[[str], str],
                 k: float) -> dict[str, np.ndarray]:
    """S(model; b, role_of(b)) for each b (Eq. 3)."""
    out = {}
    for b in benchmarks:
        key = (model, b, role_of(b))
        if key not in saliency:
            raise KeyError(f"saliency.parquet has no {model} on {b} with role {role_of(b)!r}")
        out[b] = selection.salient_set(saliency[key], k)
    return out


def arm_sets(expert_sets: Mapping[str, np.ndarray], backbone_sets: Mapping[str, np.ndarray], weak: Sequence[dict],
             donors: Mapping[str, str], policy: str, protect: bool = True) -> dict[str, np.ndarray]:
    """The final T_b of each weak benchmark (Eq. 7-8 and the conflict policy), as the pipeline computes them."""
    protection = transplant.protection_sets(dict(backbone_sets)) if protect else None
    tsets = transplant.transplant_sets(expert_sets, [w["benchmark"] for w in weak], protection)
    final, _ = transplant.resolve_conflicts(tsets, donors, {w["benchmark"]: w["gap"] for w in weak}, policy)
    return final


def moved(final: Mapping[str, np.ndarray]) -> int:
    """Neurons the ARM model takes from a donor: the union of the final T_b (a neuron one donor moves for two
    benchmarks is one neuron; after conflict resolution no neuron has two donors)."""
    if not final:
        return 0
    return int(np.logical_or.reduce(list(final.values())).sum())


# -- 1. AOS predicts quality --------------------------------------------------------------------------------

def aos_vs_quality(candidates: Sequence[dict], rows: list[dict], benchmarks: list[str], n_boot: int,
                   seed: int, groups: dict[str, list[str]] | None = None) -> dict:
    """Mean AOS against test AVG over candidates ({name, eval_model, mean_aos}), Pearson and Spearman with
    intervals that resample candidates and, within each, the test tasks (stratified, the same draw for all, so
    every candidate must have been run on the same tasks). AVG over `groups`' units when given."""
    first = candidates[0]
    for c in candidates[1:]:
        for b in benchmarks:
            if intervals.task_ids(rows, "test", c["eval_model"], b) != intervals.task_ids(rows, "test",
                                                                                       first["eval_model"], b):
                raise ValueError(f"candidates {first['name']} and {c['name']} were not run on the same test tasks "
                                 f"of {b}; the task bootstrap draws the same tasks for all")
    values = {c["name"]: intervals.per_task(rows, "test", c["eval_model"], benchmarks) for c in candidates}
    counts = {b: len(v) for b, v in values[first["name"]].items()}
    idx = intervals.resample(counts, n_boot, seed)

    def unit_means(name, draw):
        return intervals._fold(intervals._means(values[name], draw), benchmarks, groups)

    avg = np.array([unit_means(c["name"], None).mean() for c in candidates])
    avg_boot = np.stack([unit_means(c["name"], idx).mean(axis=1) for c in candidates], axis=1)
    x = np.array([c["mean_aos"] for c in candidates])
    corr = stats.correlations(x, avg, avg_boot, n_boot, seed + 1)
    points = [{"name": c["name"], "mean_aos": float(x[i]), "avg": stats.percentile_interval(avg[i], avg_boot[:, i])}
              for i, c in enumerate(candidates)]
    best = max(points, key=lambda p: p["avg"][0])
    top = max(points, key=lambda p: p["mean_aos"])
    return {**corr, "points": points, "benchmarks": benchmarks, "tasks": counts, "highest_aos": top["name"],
            "best_avg": best["name"], "highest_aos_avg_rank": 1 + sum(p["avg"][0] > top["avg"][0] for p in points)}


# -- 2. role-conditioned tracing separates benchmarks -------------------------------------------------------

def role_overlap(saliency: Saliency, experts: Mapping[str, str], roles: Mapping[str, str], k: float,
                 backbone: str | None = None) -> dict:
    """Cross-benchmark overlap of the experts' salient sets (each expert on its own benchmark) with each
    benchmark's role against the role-agnostic `response`; the same for the backbone's sets when given.

    Benchmarks served by one expert would compare a model with itself: the headline (`role`, `response`) takes
    one set per expert (the union of its benchmarks' sets), and those benchmarks' own pairs are reported apart
    (`<label>_same_expert`: {"a|b": Jaccard}). None where fewer than two experts serve the benchmarks."""
    bench = list(experts)
    served: dict[str, list[str]] = {}
    for b in bench:
        served.setdefault(experts[b], []).append(b)
    out = {"k": k, "benchmarks": bench, "experts": served}
    for label, role_of in (("role", roles.__getitem__), (RESPONSE, lambda b: RESPONSE)):
        sets = {b: salient_sets(saliency, experts[b], [b], role_of, k)[b] for b in bench}
        per_expert = {e: np.logical_or.reduce([sets[b] for b in bs]) for e, bs in served.items()}
        out[label] = stats.pairwise_overlap(per_expert) if len(per_expert) > 1 else None
        out[f"{label}_same_expert"] = {f"{a}|{b}": stats.jaccard(sets[a], sets[b])
                                       for bs in served.values() for i, a in enumerate(bs) for b in bs[i + 1:]}
        if backbone is not None:
            out[f"backbone_{label}"] = stats.pairwise_overlap(salient_sets(saliency, backbone, bench, role_of, k))
    return out


# -- 3. protection flattens the k-curve --------------------------------------------------------------------

def sweep_sets(saliency: Saliency, experts: Mapping[str, str], roles: Mapping[str, str], backbone: str,
               weak: Sequence[dict], donors: Mapping[str, str], policy: str, ks: Sequence[float]
               ) -> dict[tuple[float, bool], dict[str, np.ndarray]]:
    """{(k, protect): final T_b} from the stored saliency: the backbone stays, only k and protection change."""
    bench = list(experts)
    out = {}
    for k in ks:
        expert_sets = {b: salient_sets(saliency, experts[b], [b], roles.__getitem__, k)[b] for b in bench}
        backbone_sets = salient_sets(saliency, backbone, bench, roles.__getitem__, k)
        for protect in (True, False):
            out[k, protect] = arm_sets(expert_sets, backbone_sets, weak, donors, policy, protect)
    return out


def score(rows: list[dict], model: str, benchmarks: list[str], n_boot: int, seed: int,
          groups: dict[str, list[str]] | None = None) -> dict:
    """AVG and WS over `benchmarks` (or `groups`' units) with intervals, and each benchmark's score."""
    values = intervals.per_task(rows, "test", model, benchmarks)
    out = intervals.model_intervals(rows, [model], benchmarks, n_boot=n_boot, seed=seed, groups=groups)[model]
    return {**out, "per_benchmark": {b: float(v.mean()) for b, v in values.items()},
            "tasks": {b: len(v) for b, v in values.items()}}


# -- 4. ARM raises the worst suite -------------------------------------------------------------------------

def arm_vs_backbone(rows: list[dict], in_domain: list[str], out_of_domain: list[str], n_boot: int,
                    seed: int, units: Callable[[list[str]], dict[str, list[str]]] | None = None) -> dict:
    """ARM - backbone paired by task, and each one's AVG and WS, over the in-domain and out-of-domain suites.
    The paired WS is the difference on the backbone's worst suite on dev (`WS_suite`), where dev has them all."""
    out = {}
    for label, bench in (("in_domain", in_domain), ("out_of_domain", out_of_domain)):
        if not bench:
            out[label] = None
            continue
        groups = units(bench) if units else None
        worst = intervals.worst_suite(rows, "backbone", bench, groups=groups)
        out[label] = {"benchmarks": bench,
                      "arm": score(rows, "arm", bench, n_boot, seed, groups),
                      "backbone": score(rows, "backbone", bench, n_boot, seed, groups),
                      "difference": intervals.paired_difference(rows, "arm", "backbone", bench, n_boot=n_boot,
                                                                seed=seed, worst=worst, groups=groups)}
    return out


# -- 5. role-agnostic ablation -----------------------------------------------------------------------------

def role_agnostic_selection(saliency: Saliency, experts: Mapping[str, str], candidates: Sequence[str],
                            k: float, groups: Mapping[str, Sequence[str]] | None = None) -> dict:
    """AOS and the selected backbone when every benchmark's role is `response` (Eq. 4-5)."""
    bench = list(experts)
    expert_sets = {b: salient_sets(saliency, experts[b], [b], lambda _: RESPONSE, k)[b] for b in bench}
    cand_sets = {c: salient_sets(saliency, c, bench, lambda _: RESPONSE, k) for c in candidates}
    aos = selection.aos_table(cand_sets, expert_sets)
    return {"expert_sets": expert_sets, "candidate_sets": cand_sets, "aos": aos,
            "selected": selection.select(aos, list(candidates), groups)}


def compare_sets(a: Mapping[str, np.ndarray], b: Mapping[str, np.ndarray]) -> dict[str, dict]:
    """Per benchmark in either: neurons in each and their Jaccard."""
    out = {}
    for bench in dict.fromkeys([*a, *b]):
        x, y = a.get(bench), b.get(bench)
        ref = x if x is not None else y
        x = x if x is not None else np.zeros_like(ref)
        y = y if y is not None else np.zeros_like(ref)
        out[bench] = {"a": int(x.sum()), "b": int(y.sum()), "both": int((x & y).sum()),
                      "jaccard": stats.jaccard(x, y)}
    return out


# -- 6. how much calibration data is enough --------------------------------------------------------------

def subset_saliency(result: TraceResult, groups: Sequence[int]) -> np.ndarray:
    """s [L, d_ff] over a subset of per-trajectory groups (each group one trajectory, its sum that trajectory's
    mean |activation| over its role tokens): the mean over those with a role token, as Eq. 2 over the subset."""
    used = [g for g in groups if result.n_trajectories[g] > 0]
    if not used:
        raise ValueError(f"{result.model}: no trajectory of the subset has a role token")
    return (result.sums[:, used, :].sum(axis=1) / np.float32(len(used))).astype(np.float32)


def draw(n_available: int, n: int | None, seed: int, salt: int) -> list[int]:
    """n of n_available trajectory indices without replacement (all of them for n None or n >= n_available)."""
    if n is None or n >= n_available:
        return list(range(n_available))
    return sorted(np.random.default_rng([seed, n, salt]).choice(n_available, size=n, replace=False).tolist())


def calibration_point(per_traj: Mapping[str, TraceResult], groups: Mapping[str, list[tuple[str, str]]],
                      experts: Mapping[str, str], candidates: Sequence[str],
                      weak_of: Callable[[str], Sequence[dict]], donors: Mapping[str, str], policy: str,
                      k: float, units: Mapping[str, Sequence[str]] | None = None) -> dict:
    """Sets, AOS choice and T_b from a subset of trajectories, `groups` {benchmark: the subset's groups}, of each
    model's per-trajectory trace (one group per trajectory and role). `weak_of(backbone)`: the weak benchmarks
    with that backbone (a subset that picks another backbone gets that backbone's own diagnosis). `units`: the
    reported units AOS is averaged over (an aggregate counts once)."""
    bench = list(experts)

    def sal(model: str, b: str) -> np.ndarray:
        r = per_traj[model]
        return subset_saliency(r, [r.groups.index(g) for g in groups[b]])

    expert_sets = {b: selection.salient_set(sal(experts[b], b), k) for b in bench}
    cand_sets = {c: {b: selection.salient_set(sal(c, b), k) for b in bench} for c in candidates}
    aos = selection.aos_table(cand_sets, expert_sets)
    chosen = selection.select(aos, list(candidates), units)
    weak = weak_of(chosen)
    final = arm_sets(expert_sets, cand_sets[chosen], weak, donors, policy)
    return {"expert_sets": expert_sets, "candidate_sets": cand_sets, "aos": aos, "selected": chosen,
            "weak": [w["benchmark"] for w in weak], "final": final}


def calibration_change(point: dict, full: dict) -> dict:
    """How far a subset's point moves from the full data's: Jaccard of every top-k set, the choice, T_b."""
    return {"expert_jaccard": float(np.mean([stats.jaccard(point["expert_sets"][b], full["expert_sets"][b])
                                             for b in full["expert_sets"]])),
            "candidate_jaccard": float(np.mean([stats.jaccard(point["candidate_sets"][c][b],
                                                              full["candidate_sets"][c][b])
                                                for c in full["candidate_sets"] for b in full["expert_sets"]])),
            "selected": point["selected"], "same_choice": point["selected"] == full["selected"],
            "transplant_jaccard": (float(np.mean([stats.jaccard(point["final"][b], full["final"][b])
                                                  for b in full["final"]])) if full["final"] else None),
            "moved": moved(point["final"])}
