"""Resume (`stages.py`): keys that change with every input a stage reads, and a run killed in each stage and
resumed gives the files an uninterrupted run gives, reusing what the killed run finished."""

import dataclasses
import json
import os
import time

import numpy as np
import pytest
import torch

from arm_ray import pipeline
from arm_ray.config import parse_config
from arm_ray.errors import ConfigError
from arm_ray.saliency import TraceResult
from arm_ray.stages import Store, digest, files_fingerprint, options_fingerprint
from arm_ray.tracing import LocalTracing
from tests.conftest import small_demo_config, tiny_config


class Killed(BaseException):
    """Stands for a SIGKILL: not an Exception, so nothing on the way up handles it."""


def test_digest_sees_dtype_shape_bytes_and_order():
    a = np.arange(6, dtype=np.float32)
    assert digest(a) == digest(a.copy()) == digest(torch.arange(6, dtype=torch.float32))
    assert len({digest(a), digest(a.reshape(2, 3)), digest(a.astype(np.float64)), digest(a[::-1].copy())}) == 4
    assert digest({"x": 1, "y": 2}) == digest({"y": 2, "x": 1})  # a mapping's order is not an input
    assert digest([1, 2]) != digest([2, 1]) and digest("1") != digest(1) and digest(b"ab", b"c") != digest(b"a", b"bc")


def test_fingerprint_changes_when_a_file_is_rewritten(tmp_path):
    (tmp_path / "model.safetensors").write_bytes(b"0" * 10)
    before = files_fingerprint(tmp_path)
    assert files_fingerprint(tmp_path) == before
    time.sleep(0.01)
    (tmp_path / "model.safetensors").write_bytes(b"1" * 10)  # same size, new contents
    assert files_fingerprint(tmp_path) != before
    data = tmp_path / "data"
    data.mkdir()
    (data / "tasks.json").write_text("[]")
    opts = {"data_dir": str(data), "trials": 1}
    first = options_fingerprint(opts)
    (data / "tasks.json").write_text("[1]")
    assert options_fingerprint(opts) != first and options_fingerprint(opts)["trials"] == 1


def test_a_half_written_or_stale_trace_is_not_reused(tmp_path):
    r = TraceResult("m", "expert", [("b", "action")], np.ones((2, 1, 4), np.float32), [3], [17])
    store = Store(tmp_path, resume=True)
    store.save_trace(r, "k1")
    back = store.load_trace("m", "k1")
    assert back.groups == r.groups and back.n_tokens == [17] and back.sums.tobytes() == r.sums.tobytes()
    assert store.load_trace("m", "k2") is None  # other inputs
    f = store._trace_file("m")
    f.write_bytes(f.read_bytes()[:40])  # cut short
    assert store.load_trace("m", "k1") is None
    assert Store(tmp_path, resume=False).load_trace("m", "k1") is None and not f.exists()  # a fresh run: wiped


# -- the recipe killed in each stage, in this process --------------------------------------------------------

class KillAt:
    """Progress bars (the pipeline's `progress`) that raise Killed on the n-th update of the bar named `desc`."""

    def __init__(self, desc: str | None, n: int = 1):
        self.desc, self.n, self.fired = desc, n, False

    def __call__(self, total=None, desc="", **kw):
        outer = self

        class Bar:
            seen = 0

            def update(self, k=1):
                Bar.seen += k
                if desc == outer.desc and Bar.seen >= outer.n and not outer.fired:
                    outer.fired = True
                    raise Killed(desc)

            def close(self):
                pass
        return Bar()


class Counting(LocalTracing):
    """LocalTracing that counts its jobs and candidate writes, and can die in a candidate write."""

    def __init__(self, sources, log: list, die_writing: bool = False):
        super().__init__(sources)
        self.log, self.die_writing = log, die_writing

    def trace(self, jobs, packed, on_done=None):
        self.log += [j.model for j in jobs]
        return super().trace(jobs, packed, on_done)

    def write_candidate(self, recipe, out, *a, **kw):
        self.log.append(f"write {recipe.name}")
        if self.die_writing:
            raise Killed("backbone")
        return super().write_candidate(recipe, out, *a, **kw)


def run(cfg_dict, out, progress=None, die_writing=False, log=None, rollouts=None, **kw):
    log = [] if log is None else log
    cfg = parse_config(cfg_dict)
    return pipeline.run(cfg, out, lambda ctx: Counting(ctx.sources("cpu"), log, die_writing),
                        (lambda c: rollouts) if rollouts is not None else None, progress=progress or KillAt(None),
                        **kw)


def outputs(out) -> dict[str, bytes]:
    """The run's files that must not depend on being resumed (report.json without timings and stages; logs/
    holds one engine log per process id)."""
    files = {p.relative_to(out).as_posix(): p.read_bytes() for p in sorted(out.rglob("*"))
             if p.is_file() and not p.relative_to(out).as_posix().startswith((".arm_ray", ".work", "logs/"))
             and p.name not in ("report.json", "report.md") and p.suffix != ".png"}
    report = json.loads((out / "report.json").read_text())
    for k in ("timings", "stages", "placement"):
        report.pop(k, None)
    files["report.json"] = json.dumps(report, sort_keys=True).replace(str(out), "OUT").encode()
    return files


@pytest.fixture(scope="module")
def demo(trained_pool, tmp_path_factory):
    """The demo config cut small, rolled out greedily in this process; run once without interruption."""
    from arm_ray.rollout.backend import LocalRollouts

    cfg = small_demo_config(trained_pool, {"max_new_tokens": 16})
    rollouts = LocalRollouts("transformers", threads=1)
    out = tmp_path_factory.mktemp("whole") / "run"
    report = run(cfg, out, rollouts=rollouts)
    assert set(report["stages"].values()) == {"computed"}
    return cfg, rollouts, out


def test_killed_in_each_stage_and_resumed_gives_the_same_files(demo, tmp_path):
    cfg, rollouts, whole = demo
    out, log = tmp_path / "run", []
    kills = [("trace", dict(progress=KillAt("trace models", 2))),  # two models traced, then killed
             ("backbone", dict(die_writing=True)),
             ("dev rollouts", dict(progress=KillAt("dev rollouts", 1))),
             ("transplant", dict(progress=KillAt("transplant shards", 1))),
             ("test rollouts", dict(progress=KillAt("test rollouts", 1)))]
    n_jobs = len(pipeline.trace_jobs(pipeline.prepare(parse_config(cfg))))
    for i, (stage, how) in enumerate(kills):
        with pytest.raises(Killed, match=stage):
            run(cfg, out, log=log, rollouts=rollouts, resume=i > 0, **how)
        assert not (out / "report.json").exists()
        if i == 0:
            assert len(log) == n_jobs and len(list((out / ".arm_ray" / "traces").glob("*.npz"))) == 2
            with pytest.raises(ConfigError, match="holds an unfinished run .*pass --resume"):
                run(cfg, out)
            log.clear()
    report = run(cfg, out, log=log, rollouts=rollouts, resume=True)
    assert report["stages"] == {"trace": "reused", "backbone": "reused", "dev_rollouts": "reused",
                                "transplant": "reused", "test_rollouts": "computed"}
    traced = [m for m in log if not m.startswith("write")]
    assert len(traced) == n_jobs - 2  # every model traced once over all the tries
    assert outputs(out) == outputs(whole)


def test_a_finished_run_resumed_redoes_nothing_and_a_changed_input_redoes_what_depends_on_it(demo, tmp_path):
    import shutil

    cfg, rollouts, whole = demo
    out, log = tmp_path / "run", []
    shutil.copytree(whole, out)
    report = run(cfg, out, log=log, rollouts=rollouts, resume=True)
    assert set(report["stages"].values()) == {"reused"} and log == []
    assert outputs(out) == outputs(whole)

    changed = {**cfg, "k": cfg["k"] * 2}  # selection and transplant read k; traces do not
    report = run(changed, out, log=log, rollouts=rollouts, resume=True)
    assert report["stages"]["trace"] == "reused" and report["stages"]["transplant"] == "computed"
    assert log == [] or all(m.startswith("write") for m in log)

    expert = out.parent / "office_expert"  # one expert's weights rewritten: its trace and every candidate's redone
    shutil.copytree(cfg["experts"]["office_expert"]["path"], expert)
    os.utime(expert / "model.safetensors", ns=(1, 1))
    moved = {**changed, "experts": {**changed["experts"], "office_expert": {"path": str(expert)}}}
    log.clear()
    report = run(moved, out, log=log, rollouts=rollouts, resume=True)
    n_candidates = len(moved["operators"])
    assert report["stages"]["trace"] == f"2 of {3 + n_candidates} models reused"
    assert sorted(m for m in log if not m.startswith("write")) == sorted(
        ["office_expert", *(op["name"] for op in moved["operators"])])


def test_resume_and_overwrite_together_are_refused(perturbed_pool, tmp_path):
    from arm_ray.main import main

    assert main(["--config", "configs/quick.yaml", "--output", str(tmp_path), "--resume", "--overwrite"]) == 2


def test_a_run_without_rollouts_resumes_too(perturbed_pool, tmp_path):
    cfg = tiny_config(perturbed_pool)
    with pytest.raises(Killed):
        run(cfg, tmp_path / "run", progress=KillAt("transplant shards"))
    report = run(cfg, tmp_path / "run", resume=True)
    assert report["stages"] == {"trace": "reused", "backbone": "reused", "transplant": "computed"}


def test_keys_see_the_merge_device_the_fast_dtype_and_arms_own_source(perturbed_pool, monkeypatch):
    from arm_ray import stages
    from arm_ray.prepare import prepare

    cpu = parse_config(tiny_config(perturbed_pool))
    gpu = parse_config(tiny_config(perturbed_pool, resources={**tiny_config(perturbed_pool)["resources"],
                                                              "tracer_num_gpus": 1}))
    ctx = prepare(cpu)
    on_cpu, on_gpu = stages.Keys(ctx), stages.Keys(dataclasses.replace(ctx, cfg=gpu))
    recipe = ctx.recipes[-1]  # dare_ties: its draws and blocks depend on the device kind
    assert on_cpu.candidate(recipe) != on_gpu.candidate(recipe)
    job = pipeline.trace_jobs(ctx)[0]
    assert on_cpu.trace(job) != on_gpu.trace(job)
    # `fast` is made concrete per machine: a CPU with bf16 and one without trace different numbers
    fast = stages.Keys(dataclasses.replace(ctx, cfg=parse_config(tiny_config(
        perturbed_pool, trace={"max_tokens_per_batch": 1024, "dtype": "fast"}))))
    here, has_bf16 = fast.trace(job), stages._dtype_made("fast", "cpu") == "bfloat16"
    monkeypatch.setattr("arm_ray.devices.cpu_has_bf16", lambda: not has_bf16)  # the other kind of CPU
    assert fast.trace(job) != here
    # an edit of arm-ray's source within one version is a new input
    assert stages.versions()["arm-ray source"] == stages.source_digest()
    monkeypatch.setattr(stages, "source_digest", lambda: "edited")
    assert stages.Keys(ctx).candidate(recipe) != on_cpu.candidate(recipe)


def test_an_endpoint_users_served_models_are_a_rollout_input(tmp_path):
    import http.server
    import threading

    from arm_ray.benchmarks.tau2 import Tau2Retail

    served = {"data": [{"id": "user-a", "root": "/m/a", "created": 1}]}

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            body = json.dumps({**served, "data": [{**m, "created": time.time()} for m in served["data"]]}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *a):
            pass

    server = http.server.HTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        user = {"kind": "endpoint", "base_url": f"http://127.0.0.1:{server.server_port}/v1", "model": "user-a"}
        suite = Tau2Retail(user=user)
        first = suite.resume_inputs()
        assert first == suite.resume_inputs() == [{"id": "user-a", "root": "/m/a", "max_model_len": None,
                                                    "owned_by": None}]  # `created` left out: it is the request's
        served["data"] = [{"id": "user-a", "root": "/m/b"}]  # the same name, another model behind it
        assert suite.resume_inputs() != first
    finally:
        server.shutdown()
    with pytest.raises(ConfigError, match="does not list its models"):
        suite.resume_inputs()
