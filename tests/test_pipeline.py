"""The recipe end to end on a tiny pool (in-process backend), and bad input caught before heavy work."""

import json

import pytest
import torch

from arm_ray import pipeline
from arm_ray.checkpoints import open_checkpoint
from arm_ray.config import parse_config
from arm_ray.errors import CheckpointError, ConfigError, DataError
from arm_ray.tracing import LocalTracing
from tests.conftest import (
    check_diagnosis_and_results,
    check_png,
    copy_checkpoint,
    small_demo_config,
    tiny_config,
)


def run_local(cfg_dict, out, rollouts=None, **kw):
    """The recipe in this process: tracing in-process, rollouts (when given) by a `LocalRollouts`."""
    cfg = parse_config(cfg_dict)
    return pipeline.run(cfg, out, lambda ctx: LocalTracing(ctx.sources("cpu")),
                        (lambda cfg: rollouts) if rollouts is not None else None, **kw)


@pytest.fixture(scope="module")
def tiny_run(perturbed_pool, tmp_path_factory):
    out = tmp_path_factory.mktemp("run") / "run"
    return out, run_local(tiny_config(perturbed_pool), out)


def test_run_directory_contract(tiny_run):
    import pyarrow.parquet as pq

    out, report = tiny_run
    for name in ("model", "backbone", "report.json", "report.md", "saliency.parquet", "aos.png", "transplant.png"):
        assert (out / name).exists(), name
    for png in ("aos.png", "transplant.png"):
        check_png(out / png)
    on_disk = json.loads((out / "report.json").read_text())
    for key in ("k", "benchmarks", "roles", "experts", "candidates", "selected", "weak", "conflict_policy",
                "transplanted", "conflicts", "output_model", "backbone_model", "timings"):
        assert key in on_disk, key
    assert on_disk["selected"] in {c["name"] for c in on_disk["candidates"]}
    t = pq.read_table(out / "saliency.parquet")
    assert t.column_names == ["model", "kind", "benchmark", "role", "layer", "values", "n_trajectories", "n_tokens"]
    rows = t.to_pylist()
    assert {r["model"] for r in rows} == {"tau", "office", "os", "average", "ties", "dare_ties"}
    assert all(len(r["values"]) == 128 for r in rows)
    # experts on their own benchmark only; candidates on all three
    assert {r["benchmark"] for r in rows if r["model"] == "tau"} == {"tau_bench"}
    assert {r["benchmark"] for r in rows if r["model"] == "ties"} == {"tau_bench", "officebench", "agentbench_os"}
    assert "Activation-Overlap Score" in (out / "report.md").read_text()
    assert "neurons transplanted" in (out / "model" / "README.md").read_text()


def test_output_differs_from_backbone_only_in_transplanted_neurons(tiny_run, perturbed_pool):
    out, report = tiny_run
    model = open_checkpoint(str(out / "model")).load_state_dict()
    backbone = open_checkpoint(str(out / "backbone")).load_state_dict()
    donors = {"officebench": open_checkpoint(str(perturbed_pool / "expert_officebench")).load_state_dict(),
              "agentbench_os": open_checkpoint(str(perturbed_pool / "expert_agentbench_os")).load_state_dict()}
    moved = {b: v for b, v in report["transplanted"].items() if v}
    assert moved, "the tiny run should move some neurons"
    expected = {k: v.clone() for k, v in backbone.items()}
    for b, pairs in moved.items():
        for layer, j in pairs:
            p = f"model.layers.{layer}.mlp."
            expected[p + "gate_proj.weight"][j] = donors[b][p + "gate_proj.weight"][j]
            expected[p + "up_proj.weight"][j] = donors[b][p + "up_proj.weight"][j]
            expected[p + "down_proj.weight"][:, j] = donors[b][p + "down_proj.weight"][:, j]
    assert set(model) == set(backbone)
    for k in model:
        assert torch.equal(model[k], expected[k]), k
    changed = sum(int((model[k] != backbone[k]).any()) for k in model)
    assert changed > 0


def test_two_runs_are_byte_identical(tiny_run, perturbed_pool, tmp_path):
    out, _ = tiny_run
    run_local(tiny_config(perturbed_pool), tmp_path / "again")
    for f in sorted((out / "model").iterdir()):
        assert f.read_bytes() == (tmp_path / "again" / "model" / f.name).read_bytes(), f.name


def test_refuses_a_directory_holding_a_run(tiny_run, perturbed_pool):
    out, _ = tiny_run
    with pytest.raises(ConfigError, match="already holds a run.*--overwrite"):
        run_local(tiny_config(perturbed_pool), out)


def test_self_merge_sanity_check(perturbed_pool, tmp_path):
    """The paper's check: one expert merged with itself has AOS 1.0 and transplants nothing."""
    dev = tmp_path / "dev.json"
    dev.write_text(json.dumps({"os": {"agentbench_os": 0.7}, "self": {"agentbench_os": 0.7}}))
    cfg = tiny_config(perturbed_pool, experts={"os": {"path": str(perturbed_pool / "expert_agentbench_os")}},
                      benchmarks={"agentbench_os": {"expert": "os"}},
                      operators=[{"name": "self", "method": "linear", "parameters": {"weight": 1.0}}],
                      weak={"dev_results": str(dev)})
    cfg["calibration"]["files"] = [{"path": str(perturbed_pool / "calibration" / "agentbench_os.jsonl")}]
    report = run_local(cfg, tmp_path / "run")
    assert report["candidates"][0]["aos"] == {"agentbench_os": 1.0}
    assert report["weak"] == [] and report["transplanted"] == {}
    a = open_checkpoint(str(tmp_path / "run" / "model")).load_state_dict()
    b = open_checkpoint(str(perturbed_pool / "expert_agentbench_os")).load_state_dict()
    assert all(torch.equal(a[k], b[k]) for k in b)


def test_dev_results_pick_weak_by_gap(perturbed_pool, tmp_path):
    from arm_ray.pipeline import weak_benchmarks

    dev = {"tau": {"tau_bench": 0.9}, "office": {"officebench": 0.8}, "os": {"agentbench_os": 0.5},
           "ties": {"tau_bench": 0.4, "officebench": 0.75, "agentbench_os": 0.6}}
    cfg = parse_config(tiny_config(perturbed_pool, weak={"dev_results": "x", "threshold": 0.01}))
    assert weak_benchmarks(cfg, "ties", dev) == [
        {"benchmark": "tau_bench", "gap": pytest.approx(0.5), "source": "dev_results"},
        {"benchmark": "officebench", "gap": pytest.approx(0.05), "source": "dev_results"}]
    cfg = parse_config(tiny_config(perturbed_pool, weak={"dev_results": "x", "top_m": 1}))
    assert [w["benchmark"] for w in weak_benchmarks(cfg, "ties", dev)] == ["tau_bench"]


# -- bad input: a clear error naming the culprit, from `prepare` (no weights loaded) --

def prepare(cfg_dict):
    from arm_ray.prepare import prepare

    return prepare(parse_config(cfg_dict))


def test_unknown_operator_and_parameter(perturbed_pool):
    ops = [{"name": "a", "method": "linear", "parameters": {"weight": 1.0}}, {"name": "x", "method": "tiez"}]
    with pytest.raises(ConfigError, match=r"^operators\[1\] \(x\)\.method: unknown operator 'tiez'"):
        prepare(tiny_config(perturbed_pool, operators=ops))
    # a parameter of the wrong type fails here, naming the operator and the parameter (not after tracing)
    for bad in ("high", True, [0.5]):
        with pytest.raises(ConfigError, match=r"^operators\[0\] \(x\)\.parameters\.density: ties takes a float"):
            prepare(tiny_config(perturbed_pool, operators=[{"name": "x", "method": "ties",
                                                       "parameters": {"weight": 1.0, "density": bad}}]))
    with pytest.raises(ConfigError, match=r"parameters\.filter_wise: model_stock takes a bool"):
        prepare(tiny_config(perturbed_pool, operators=[{"name": "x", "method": "model_stock",
                                                   "parameters": {"filter_wise": "no"}}]))
    with pytest.raises(ConfigError, match=r"operators\[0\] \(x\).parameters.densty: unknown parameter for ties"):
        prepare(tiny_config(perturbed_pool, operators=[{"name": "x", "method": "ties",
                                                   "parameters": {"weight": 1.0, "densty": 0.5}}]))
    with pytest.raises(ConfigError, match="parameters.weight: required by linear"):
        prepare(tiny_config(perturbed_pool, operators=[{"name": "x", "method": "linear"}]))


def test_bf16_on_a_cpu_without_it_is_warned_about_and_fast_is_not(perturbed_pool, monkeypatch):
    from arm_ray import devices

    monkeypatch.setattr(devices, "cpu_has_bf16", lambda cpuinfo=None: False)  # an AVX2 CPU
    ctx = prepare(tiny_config(perturbed_pool, trace={"dtype": "bfloat16"}))
    assert [w.split(":")[0] for w in ctx.warnings if "bf16 arithmetic" in w] == ["trace.dtype"]
    ctx = prepare(tiny_config(perturbed_pool, trace={"dtype": "fast"}))
    assert not [w for w in ctx.warnings if "bf16 arithmetic" in w]
    ctx = prepare(tiny_config(perturbed_pool, trace={"dtype": "bfloat16"},
                              resources={"tracer_num_gpus": 1}))  # a GPU computes it: nothing to say
    assert not [w for w in ctx.warnings if "bf16 arithmetic" in w]


def test_benchmark_without_calibration(perturbed_pool):
    cfg = tiny_config(perturbed_pool)
    cfg["calibration"]["files"] = cfg["calibration"]["files"][:2]
    with pytest.raises(DataError, match="benchmark agentbench_os: no calibration trajectory"):
        prepare(cfg)


def test_benchmark_without_role_token(perturbed_pool, tmp_path):
    # shell trajectories labelled as tau_bench hold no <tool_call>
    lines = (perturbed_pool / "calibration" / "agentbench_os.jsonl").read_text().splitlines()
    relabelled = [json.dumps({**json.loads(x), "benchmark": "tau_bench"}) for x in lines]
    (tmp_path / "t.jsonl").write_text("\n".join(relabelled) + "\n")
    cfg = tiny_config(perturbed_pool)
    cfg["calibration"]["files"][0] = {"path": str(tmp_path / "t.jsonl")}
    with pytest.raises(DataError, match=rf"benchmark tau_bench: no calibration trajectory in {tmp_path}/t.jsonl "
                                        r"has a 'tool_call' token"):
        prepare(cfg)
    (tmp_path / "empty.jsonl").write_text("")
    cfg["calibration"]["files"][0] = {"path": str(tmp_path / "empty.jsonl")}
    with pytest.raises(DataError, match=r"^calibration\.files\[0\]: .*/empty\.jsonl holds no records"):
        prepare(cfg)


def test_missing_weights_and_mismatched_experts(perturbed_pool, tmp_path):
    broken = copy_checkpoint(perturbed_pool / "expert_tau_bench", tmp_path / "broken")
    (broken / "model.safetensors").unlink()
    cfg = tiny_config(perturbed_pool)
    cfg["experts"]["tau"]["path"] = str(broken)
    with pytest.raises(CheckpointError, match="tau: .* holds no .safetensors"):
        prepare(cfg)
    odd = copy_checkpoint(perturbed_pool / "expert_tau_bench", tmp_path / "odd")
    c = json.loads((odd / "config.json").read_text())
    c["intermediate_size"] = 256
    (odd / "config.json").write_text(json.dumps(c))
    cfg["experts"]["tau"]["path"] = str(odd)
    with pytest.raises(CheckpointError, match="base and tau differ in config field 'intermediate_size'"):
        prepare(cfg)


def test_dev_results_missing_a_score(perturbed_pool, tmp_path):
    (tmp_path / "dev.json").write_text(json.dumps({"tau": {"tau_bench": 1.0}}))
    with pytest.raises(ConfigError, match=r'expected a number at \["office"\]\["officebench"\]'):
        prepare(tiny_config(perturbed_pool, weak={"dev_results": str(tmp_path / "dev.json")}))


def test_evaluation_needs_a_rollout_backend_and_loadable_suites(perturbed_pool, tmp_path):
    cfg = tiny_config(perturbed_pool, evaluation={})
    for b, suite in zip(("tau_bench", "officebench", "agentbench_os"), ("retail", "office", "shell")):
        cfg["benchmarks"][b]["suite"] = suite
    with pytest.raises(ConfigError, match="evaluation: this runner has no rollout backend"):
        run_local(cfg, tmp_path / "run")
    assert not (tmp_path / "run").exists()
    cfg["benchmarks"]["officebench"]["suite"] = "no_such_pkg.suites:Excel"
    with pytest.raises(ConfigError, match=r"benchmarks.officebench.suite: cannot import 'no_such_pkg.suites:Excel' "
                                          r"\(ModuleNotFoundError"):
        prepare(cfg)


def test_dev_diagnosis_and_results_table_with_in_process_rollouts(trained_pool, tmp_path):
    """configs/demo.yaml on the tests pool with greedy transformers rollouts in this process (no Ray, no vLLM):
    dev rollouts decide `weak`, test rollouts fill eval.parquet and the results table."""
    from arm_ray.rollout.backend import LocalRollouts

    cfg = small_demo_config(trained_pool, {"max_new_tokens": 24})
    report = run_local(cfg, tmp_path / "run", rollouts=LocalRollouts("transformers", threads=1))
    check_diagnosis_and_results(tmp_path / "run", report)


def test_tau2_benchmark_in_a_run(long_pool, tmp_path):
    """A run evaluating on τ² retail (gold replay as the policy, whatever the model): τ²'s scores in the results
    table with pass^k, τ²'s own results files, and the note that a scripted user is not comparable."""
    pytest.importorskip("tau2")
    from tau2.data_model.simulation import Results

    from arm_ray.rollout.backend import LocalRollouts

    cfg = tiny_config(long_pool)
    cfg["benchmarks"]["tau_bench"].update(suite="tau2_retail", options={"trials": 2})
    cfg["evaluation"] = {"test_tasks": 3, "models": ["backbone", "arm"]}
    report = run_local(cfg, tmp_path / "run", rollouts=LocalRollouts("oracle"))
    ev = report["evaluation"]
    assert ev["summary"]["arm"]["tau_bench"]["score"] == 1.0 and ev["summary"]["arm"]["tau_bench"]["episodes"] == 6
    assert ev["summary"]["arm"]["tau_bench"]["pass^k"] == {"1": 1.0, "2": 1.0}
    assert "tau_bench pass^2" in ev["pass_k_md"] and "not comparable" in ev["notes"]["tau_bench"]
    for model in ("arm", "backbone"):
        res = Results.load(tmp_path / "run" / "results" / f"{model}.tau_bench.json")
        assert len(res.simulations) == 6 and res.info.agent_info.llm == model
    md = (tmp_path / "run" / "report.md").read_text()
    assert "pass^k" in md and "not comparable with published numbers" in md


def test_officebench_in_a_run(perturbed_pool, tmp_path, officebench_dir, simia_dir, os_home):
    """A run evaluating SIMIA's OfficeBench in domain and the official sets out of domain (the gold policy plays,
    whatever the model): OfficeBench's real tasks and evaluators score every subtask into the results table."""
    from arm_ray.rollout.backend import LocalRollouts
    from arm_ray.rollout.results import read_eval

    cfg = tiny_config(perturbed_pool)
    cfg["benchmarks"]["officebench"].update(suite="officebench_simia", options={
        "data_dir": str(simia_dir), "calibration_dir": str(officebench_dir)})
    cfg["benchmarks"]["officebench_official"] = {"suite": "officebench", "parser": "officebench",
                                                 "options": {"data_dir": str(officebench_dir)}}
    cfg["evaluation"] = {"test_tasks": 4, "models": ["backbone", "arm"]}
    report = run_local(cfg, tmp_path / "run", rollouts=LocalRollouts("oracle"))
    rows = [r for r in read_eval(tmp_path / "run" / "eval.parquet") if r["benchmark"].startswith("officebench")]
    assert len(rows) == 2 * 2 * 4 and all(r["reward"] == 1.0 for r in rows)
    assert {r["task_id"] for r in rows if r["benchmark"] == "officebench"} == {
        "ob-2-13-0", "ob-3-1-0", "ob-2-13-1", "ob-3-3-0"}  # 2-app and 3-app in turn
    table = {row["label"]: row for row in report["evaluation"]["table"]}
    assert table["ARM"]["officebench"] == 1.0 and table["ARM"]["officebench_official"] == 1.0


def test_a_dead_user_endpoint_stops_the_run_in_preflight(long_pool):
    pytest.importorskip("tau2")
    cfg = tiny_config(long_pool)
    cfg["benchmarks"]["tau_bench"].update(suite="tau2_retail", options={
        "user": {"kind": "endpoint", "base_url": "http://127.0.0.1:9/v1", "model": "m"}})
    cfg["evaluation"] = {"test_tasks": 1, "models": ["arm"]}
    with pytest.raises(ConfigError, match=r"^benchmarks\.tau_bench\.options\.user: endpoint http://127\.0\.0\.1:9/v1 "
                                          r"does not answer"):
        prepare(cfg)


def test_one_checkpoint_under_two_names_is_refused(perturbed_pool):
    cfg = tiny_config(perturbed_pool)
    cfg["experts"]["os"]["path"] = str(perturbed_pool / "expert_officebench") + "/"
    with pytest.raises(ConfigError, match=r"^experts\.os\.path: .* is the same checkpoint as experts\.office\.path"):
        prepare(cfg)
    cfg = tiny_config(perturbed_pool)
    cfg["experts"]["tau"]["path"] = str(perturbed_pool / "base")
    with pytest.raises(ConfigError, match=r"^experts\.tau\.path: .* is the same checkpoint as base\.path"):
        prepare(cfg)


def test_suspect_input_is_warned_about_in_report_json(perturbed_pool, tmp_path):
    """Each of these used to pass silently; now each is a warning, logged and kept in report.json."""
    cal = tmp_path / "tau.jsonl"
    lines = (perturbed_pool / "calibration" / "tau_bench.jsonl").read_text().splitlines()
    cal.write_text("\n".join(lines + ["{not json"]) + "\n")
    dev = {m: {"tau_bench": 0.5, "officebench": 0.5, "agentbench_os": 0.5, "webshop": 0.1}
           for m in ("tau", "office", "os", "average", "ties", "dare_ties")}
    (tmp_path / "dev.json").write_text(json.dumps(dev))
    cfg = tiny_config(perturbed_pool, weak={"dev_results": str(tmp_path / "dev.json")})
    cfg["calibration"]["files"][0] = {"path": str(cal), "sample": 1000}
    cfg["calibration"].update(max_length=8192, allow_bad_records=True)
    cfg["operators"] = cfg["operators"][:1]
    report = run_local(cfg, tmp_path / "run")
    w = "\n".join(report["warnings"])
    assert f"{cal}: 1 of {len(lines) + 1} records are malformed and were dropped" in w
    assert f"calibration.files[0].sample: 1000 asked, {cal} has {len(lines)} usable records" in w
    assert "calibration.max_length: 8192 tokens exceeds the base model's max_position_embeddings (4096)" in w
    assert "scores benchmarks the config does not have (webshop)" in w
    assert json.loads((tmp_path / "run" / "report.json").read_text())["warnings"] == report["warnings"]


def test_a_killed_runs_half_written_directories_are_removed(tmp_path):
    import os
    import subprocess

    from arm_ray.prepare import remove_stale_outputs

    gone = subprocess.Popen(["true"])
    gone.wait()
    dead = tmp_path / f".model.tmp-{gone.pid}"  # a writer that has exited
    mine = tmp_path / f".model.tmp-{os.getpid()}"  # a live writer's: kept
    for d in (dead, mine):
        d.mkdir()
        (d / "model.safetensors").write_bytes(b"x")
    remove_stale_outputs(tmp_path)
    assert not dead.exists() and mine.exists()


def test_a_second_run_into_the_same_directory_is_refused(perturbed_pool, tmp_path):
    import os
    import socket
    import subprocess

    from arm_ray.prepare import RunLock

    out = tmp_path / "run"
    out.mkdir()
    with RunLock(out):  # a run in progress (this process)
        with pytest.raises(ConfigError, match=rf"is in use by another run \(host .*, pid {os.getpid()}\)"):
            run_local(tiny_config(perturbed_pool), out)
    assert not (out / ".arm_ray.lock").exists()
    gone = subprocess.Popen(["true"])
    gone.wait()
    (out / ".arm_ray.lock").write_text(f"{socket.gethostname()} {gone.pid}\n")  # a killed run's lock: taken over
    cfg = tiny_config(perturbed_pool)
    cfg["operators"] = cfg["operators"][:1]
    assert run_local(cfg, out)["selected"] == "average" and not (out / ".arm_ray.lock").exists()


def test_an_output_path_that_cannot_be_written_fails_before_work(tmp_path):
    from arm_ray.prepare import check_output_dir

    (tmp_path / "a_file").write_text("")
    with pytest.raises(ConfigError, match=r"^--output .*/a_file/run: cannot write in .*/a_file \(NotADirectoryError"):
        check_output_dir(tmp_path / "a_file" / "run", overwrite=False)


def test_nan_weights_are_named_when_the_expert_is_loaded(perturbed_pool, tmp_path):
    from safetensors.torch import load_file, save_file

    bad = copy_checkpoint(perturbed_pool / "expert_officebench", tmp_path / "bad")
    sd = load_file(bad / "model.safetensors")
    name = next(k for k in sorted(sd) if "mlp.down_proj" in k)
    sd[name][0, 0] = float("nan")
    save_file(sd, bad / "model.safetensors", metadata={"format": "pt"})
    cfg = tiny_config(perturbed_pool)
    cfg["experts"]["office"]["path"] = str(bad)
    with pytest.raises(CheckpointError, match=rf"^office: tensor {name} in .*model\.safetensors holds 1 NaN or Inf"):
        run_local(cfg, tmp_path / "run")
    assert not (tmp_path / "run" / "saliency.parquet").exists()  # nothing left to block a rerun
