"""`arm_ray.analysis_pipeline` on a finished run (in-process backends): every finding written, a k-sweep traces nothing,
the per-trajectory re-trace gives back the run's saliency, and bad input is refused before any work."""

import json

import numpy as np
import pytest

from arm_ray import analysis_pipeline as analyze
from arm_ray import analyze as analyze_cli
from arm_ray.errors import ConfigError
from arm_ray.main import main as arm_ray_main
from arm_ray.rollout import results as eval_results
from arm_ray.rollout.backend import LocalRollouts
from arm_ray.tracing import LocalTracing
from tests.conftest import check_png, mean_rewards, small_demo_config
from tests.test_pipeline import run_local


class CountingTracing(LocalTracing):
    """LocalTracing that counts the models it is asked to trace."""
    traced = 0

    def trace(self, jobs, packed, on_done=None):
        CountingTracing.traced += len(jobs)
        return super().trace(jobs, packed, on_done)


@pytest.fixture(scope="module")
def finished_run(trained_pool, tmp_path_factory):
    cfg = small_demo_config(trained_pool, {"max_new_tokens": 24})
    cfg["operators"] = [{"name": "average", "method": "linear", "parameters": {"weight": 1.0}},
                        {"name": "ta_0.3", "method": "task_arithmetic", "parameters": {"weight": 0.3}},
                        {"name": "ties", "method": "ties", "parameters": {"weight": 1.0, "density": 0.5}}]
    out = tmp_path_factory.mktemp("analyze") / "run"
    run_local(cfg, out, rollouts=LocalRollouts("transformers", threads=1))
    return out


def run_analysis(out, **opts):
    CountingTracing.traced = 0
    return analyze.analyze(out, analyze.Options(n_boot=200, **opts),
                           lambda ctx: CountingTracing(ctx.sources("cpu"), 1),
                           lambda cfg: LocalRollouts("transformers", threads=1))


def test_findings_1_to_5_trace_nothing_and_write_every_file(finished_run):
    state = run_analysis(finished_run, findings=[1, 2, 3, 4, 5], ks=[0.05, 0.1])
    assert state["traces"] == 0 and CountingTracing.traced == 0  # the k-sweep reuses the stored saliency
    f = state["findings"]
    assert set(f) == {"aos_vs_quality", "role_overlap", "protection_sweep", "arm_vs_backbone", "role_agnostic"}
    assert f["aos_vs_quality"]["n_points"] == 3
    sweep = f["protection_sweep"]
    assert [(p["k"], p["protect"]) for p in sweep["points"]] == [(0.05, False), (0.05, True), (0.1, False),
                                                                (0.1, True)]
    run_report = json.loads((finished_run / "report.json").read_text())
    at_run_k = next(p for p in sweep["points"] if p["k"] == 0.1 and p["protect"])
    assert at_run_k["moved"] == sum(len(v) for v in run_report["transplanted"].values())
    assert all(p["moved"] >= q["moved"] for p in sweep["points"] for q in sweep["points"]
               if p["k"] == q["k"] and not p["protect"] and q["protect"])  # protection only removes neurons
    # the run's own ARM model is not rolled out again: at most 3 sweep models and the ablation's two (its
    # backbone, on 3 x 2 dev tasks too) are new, on 4 suites x 2 test tasks
    assert state["rollout_episodes"] <= (3 + 2) * 4 * 2 + 3 * 2
    a = finished_run / "analysis"
    on_disk = json.loads((a / "analysis.json").read_text())
    assert on_disk["traces"] == 0 and set(on_disk["findings"]) == set(f)
    # finding 1 against numbers counted here: each candidate's test AVG from the eval rows, Pearson by numpy
    aos = on_disk["findings"]["aos_vs_quality"]
    by_model = mean_rewards(eval_results.read_eval(finished_run / "eval.parquet"), "test")
    selected = run_report["selected"]
    for p in aos["points"]:
        row = by_model["backbone" if p["name"] == selected else p["name"]]
        assert p["avg"][0] == pytest.approx(sum(row[b] for b in aos["benchmarks"]) / len(aos["benchmarks"]))
    x, y = [p["mean_aos"] for p in aos["points"]], [p["avg"][0] for p in aos["points"]]
    if np.std(y) > 0:
        assert aos["pearson"][0] == pytest.approx(np.corrcoef(x, y)[0, 1])
    assert {p["name"] for p in aos["points"]} == {c["name"] for c in run_report["candidates"]}
    for name in f:
        check_png(a / f"{name}.png")
    md = (a / "analysis.md").read_text()
    # the sentences carry analysis.json's own numbers (not only the paper's, which markdown.py holds)
    role = on_disk["findings"]["role_overlap"]["role"]
    assert f"Pearson {aos['pearson'][0]:.2f} [{aos['pearson'][1]:.2f}, {aos['pearson'][2]:.2f}]" in md
    assert f"{100 * role['overlap_rate']:.1f} %" in md
    assert "Traces run by this analysis: 0" in md


def test_calibration_size_retraces_each_model_once_and_reproduces_the_run(finished_run):
    state = run_analysis(finished_run, findings=[6], sizes=[1], seeds=2)
    c = state["findings"]["calibration_size"]
    assert state["traces"] == CountingTracing.traced == 6  # 3 experts + 3 candidates, once each
    assert c["max_abs_diff_to_run_saliency"] < 1e-4
    assert [(p["n"], p["seed"]) for p in c["points"]] == [(1, 0), (1, 1)]
    # the full data's point is the run's own selection, which the pipeline computed on another path
    assert c["full_selected"] == json.loads((finished_run / "report.json").read_text())["selected"]
    assert all(p["same_choice"] == (p["selected"] == c["full_selected"]) for p in c["points"])


def test_bad_input_is_refused_before_work(finished_run, tmp_path, capsys):
    with pytest.raises(ConfigError, match="no such run directory"):
        analyze.load_run(tmp_path / "nothing")
    (tmp_path / "half").mkdir()
    (tmp_path / "half" / "report.json").write_text("{}")
    with pytest.raises(ConfigError, match="missing run_config.json, saliency.parquet"):
        analyze.load_run(tmp_path / "half")
    with pytest.raises(ConfigError, match="findings"):
        analyze_cli.parse_args([str(finished_run), "--findings", "1,9"])
    with pytest.raises(ConfigError, match="expected comma-separated numbers"):
        analyze_cli.parse_args([str(finished_run), "--ks", "0.1,x"])
    run = analyze.load_run(finished_run)
    # a candidate that kept its own name (the selected one's rows are named `backbone`; which is selected
    # depends on the pool's build)
    gone = next(c for c in run.candidates if c != run.report["selected"])
    assert any(r["model"] == gone for r in run.rows)
    run.rows = [r for r in run.rows if r["model"] != gone]
    with pytest.raises(ConfigError, match="finding 1 needs test rollouts of every candidate.*--findings"):
        analyze.check(run, analyze.Options())
    assert arm_ray_main(["analyze", str(tmp_path / "half")]) == 2  # the console script's subcommand
    assert "missing run_config.json" in capsys.readouterr().err
