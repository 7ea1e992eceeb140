"""The findings' arithmetic on small hand-made inputs (no model, no rollout)."""

import numpy as np
import pytest

from arm_ray import selection
from arm_ray.analysis import findings, stats
from arm_ray.saliency import TraceResult


def rows_of(model, scores):
    """Test eval rows: {benchmark: [reward per task]}."""
    return [{"model": model, "split": "test", "benchmark": b, "task_id": f"{b}-{i}", "reward": float(r)}
            for b, rs in scores.items() for i, r in enumerate(rs)]


def test_aos_vs_quality_points_and_correlations():
    rows = (rows_of("a", {"x": [1, 1], "y": [1, 0]}) + rows_of("b", {"x": [1, 0], "y": [0, 0]})
            + rows_of("backbone", {"x": [1, 1], "y": [1, 1]}))
    cands = [{"name": "a", "eval_model": "a", "mean_aos": 0.5}, {"name": "b", "eval_model": "b", "mean_aos": 0.2},
             {"name": "sel", "eval_model": "backbone", "mean_aos": 0.9}]
    f = findings.aos_vs_quality(cands, rows, ["x", "y"], n_boot=200, seed=0)
    assert [p["avg"][0] for p in f["points"]] == pytest.approx([0.75, 0.25, 1.0])  # mean of the suites' means
    assert f["pearson"][0] == pytest.approx(np.corrcoef([0.5, 0.2, 0.9], [0.75, 0.25, 1.0])[0, 1])
    assert f["spearman"][0] == pytest.approx(1.0)
    assert f["highest_aos"] == "sel" and f["best_avg"] == "sel" and f["highest_aos_avg_rank"] == 1
    assert f["n_points"] == 3 and f["tasks"] == {"x": 2, "y": 2}
    # a candidate run on other tasks cannot share the others' task draws: refused, naming it
    short = rows + rows_of("c", {"x": [1], "y": [1, 0]})
    with pytest.raises(ValueError, match="candidates a and c were not run on the same test tasks of x"):
        findings.aos_vs_quality(cands + [{"name": "c", "eval_model": "c", "mean_aos": 0.1}], short, ["x", "y"],
                                n_boot=20, seed=0)


def test_the_k_curve_verdict_comes_from_intervals():
    from arm_ray.analysis.markdown import sentences

    def state(top):  # protected falls less than unprotected (points), and the paired difference at k = 0.2
        pts = [{"k": k, "protect": pr, "moved": 10 if pr else 12, "AVG": [a, a - 0.1, a + 0.1], "tasks": {"x": 40}}
               for k, pr, a in ((0.1, True, 0.50), (0.2, True, 0.49), (0.1, False, 0.50), (0.2, False, 0.47))]
        diff = {"0.1": {"AVG": [0.0, -0.02, 0.02]}, "0.2": {"AVG": top}}
        return {"k": 0.1, "findings": {"protection_sweep": {"ks": [0.1, 0.2], "points": pts, "traces": 0,
                                                            "protected_minus_unprotected": diff}}}

    unsure = sentences(state([0.02, -0.01, 0.05]))[0][3]
    assert "does not measurably flatten" in unsure  # 1 point less of a fall, an interval across 0
    assert "Protection flattens" in sentences(state([0.02, 0.01, 0.05]))[0][3]


def test_subset_saliency_is_the_mean_over_trajectories_with_role_tokens():
    sums = np.zeros((1, 3, 2), np.float32)
    sums[0, 0], sums[0, 1] = [1, 2], [3, 6]  # group 2 has no role token
    r = TraceResult("m", "expert", [("b#0", "r"), ("b#1", "r"), ("b#2", "r")], sums, [1, 1, 0], [4, 5, 0])
    assert findings.subset_saliency(r, [0, 1, 2]).tolist() == [[2, 4]]
    assert findings.subset_saliency(r, [1]).tolist() == [[3, 6]]
    with pytest.raises(ValueError, match="no trajectory"):
        findings.subset_saliency(r, [2])


def test_draw_is_seeded_without_replacement_and_all_when_asked_for_more():
    a = findings.draw(10, 4, seed=0, salt=1)
    assert a == findings.draw(10, 4, seed=0, salt=1) and len(set(a)) == 4 and a == sorted(a)
    assert a != findings.draw(10, 4, seed=1, salt=1)
    assert findings.draw(3, 8, 0, 0) == findings.draw(3, None, 0, 0) == [0, 1, 2]


def test_arm_sets_protection_and_its_ablation():
    donor = {"x": np.array([[1, 1, 0, 0]], bool), "y": np.array([[0, 0, 1, 1]], bool)}
    backbone = {"x": np.array([[0, 0, 1, 0]], bool), "y": np.array([[1, 0, 0, 0]], bool)}
    weak = [{"benchmark": "x", "gap": 0.3}]
    on = findings.arm_sets(donor, backbone, weak, {"x": "ex", "y": "ey"}, "skip", protect=True)
    off = findings.arm_sets(donor, backbone, weak, {"x": "ex", "y": "ey"}, "skip", protect=False)
    assert on["x"].tolist() == [[False, True, False, False]]  # neuron 0 is salient for y in the backbone
    assert off["x"].tolist() == [[True, True, False, False]]
    assert findings.moved(on) == 1 and findings.moved(off) == 2
    # one donor moving a neuron for two benchmarks moves it once
    assert findings.moved({"x": off["x"], "z": off["x"]}) == 2 and findings.moved({}) == 0


def test_calibration_point_on_the_full_set_is_the_runs_selection():
    rng = np.random.default_rng(0)
    groups = {"x": [("x#0", "r"), ("x#1", "r")], "y": [("y#0", "r"), ("y#1", "r")]}
    every = groups["x"] + groups["y"]

    def result(name, gs):
        return TraceResult(name, "m", gs, rng.random((2, len(gs), 20)).astype(np.float32), [1] * len(gs),
                           [3] * len(gs))

    per = {"ex": result("ex", groups["x"]), "ey": result("ey", groups["y"]), "c1": result("c1", every),
           "c2": result("c2", every)}
    asked = []
    p = findings.calibration_point(per, groups, {"x": "ex", "y": "ey"}, ["c1", "c2"], lambda c: asked.append(c) or [],
                                   {"x": "ex", "y": "ey"}, "skip", 0.2)
    assert asked == [p["selected"]] and p["weak"] == []  # the weak list is the chosen backbone's own
    # by hand: each layer's 4 largest of 20 (k = 0.2; random floats do not tie), as sets of (layer, neuron)
    def top(s):
        return {(layer, int(j)) for layer in range(s.shape[0]) for j in np.argsort(-s[layer])[:4]}

    def mean_over(r, idx):
        return r.sums[:, idx, :].mean(axis=1)

    def jac(a, b):
        return len(a & b) / len(a | b)

    def mask(cells):
        m = np.zeros((2, 20), bool)
        for layer, j in cells:
            m[layer, j] = True
        return m

    ex, ey = top(mean_over(per["ex"], [0, 1])), top(mean_over(per["ey"], [0, 1]))
    assert np.array_equal(p["expert_sets"]["x"], mask(ex)) and np.array_equal(p["expert_sets"]["y"], mask(ey))
    aos = {c: (jac(top(mean_over(per[c], [0, 1])), ex) + jac(top(mean_over(per[c], [2, 3])), ey)) / 2
           for c in ("c1", "c2")}
    assert p["selected"] == max(aos, key=aos.get) and p["final"] == {}
    # one trajectory per benchmark against the full data: the Jaccards of those sets, counted here
    sub = findings.calibration_point(per, {"x": groups["x"][:1], "y": groups["y"][1:]}, {"x": "ex", "y": "ey"},
                                     ["c1", "c2"], lambda c: [], {"x": "ex", "y": "ey"}, "skip", 0.2)
    change = findings.calibration_change(sub, p)
    assert change["expert_jaccard"] == pytest.approx((jac(top(mean_over(per["ex"], [0])), ex)
                                                      + jac(top(mean_over(per["ey"], [1])), ey)) / 2)
    cand = [jac(top(mean_over(per[c], [i])), top(mean_over(per[c], pair)))
            for c in ("c1", "c2") for i, pair in ((0, [0, 1]), (3, [2, 3]))]
    assert change["candidate_jaccard"] == pytest.approx(np.mean(cand))
    assert change["transplant_jaccard"] is None  # no weak benchmark: nothing to compare


def test_role_overlap_keeps_benchmarks_of_one_expert_apart():
    rng = np.random.default_rng(3)
    sal = {}
    for model, bench in (("e1", "retail"), ("e1", "airline"), ("e2", "shell")):
        for role in ("act", "response"):
            sal[model, bench, role] = rng.random((2, 10)).astype(np.float32)
    experts = {"retail": "e1", "airline": "e1", "shell": "e2"}
    o = findings.role_overlap(sal, experts, {b: "act" for b in experts}, 0.3)
    assert o["experts"] == {"e1": ["retail", "airline"], "e2": ["shell"]}
    assert o["role"]["n_sets"] == 2 and set(o["role"]["pairs"]) == {"e1|e2"}  # one set per expert
    sets = {b: selection.salient_set(sal[experts[b], b, "act"], 0.3) for b in experts}
    assert o["role_same_expert"] == {"retail|airline": pytest.approx(stats.jaccard(sets["retail"], sets["airline"]))}
    e1 = sets["retail"] | sets["airline"]
    assert o["role"]["jaccard"] == pytest.approx(stats.jaccard(e1, sets["shell"]))
    alone = findings.role_overlap(sal, {"retail": "e1", "airline": "e1"}, {"retail": "act", "airline": "act"}, 0.3)
    assert alone["role"] is None  # one expert: no cross-expert overlap to state
