"""`ray job submit` against a local `ray start --head` on loopback runs the pipeline end to end."""

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
import yaml

from tests.conftest import tiny_config

pytestmark = [pytest.mark.ray, pytest.mark.slow]
ROOT = Path(__file__).resolve().parents[1]


def _ray(*args, env, timeout=180):
    exe = Path(sys.executable).with_name("ray")
    return subprocess.run([str(exe), *args], env=env, capture_output=True, text=True, timeout=timeout)


def _submit(*args, env, timeout):
    """`ray job submit`, tried again while the head's dashboard agent is not up yet (it answers "No available
    agent to submit job" for a while after `ray start` on a loaded machine)."""
    deadline = time.monotonic() + 120
    while True:
        sub = _ray("job", "submit", *args, env=env, timeout=timeout)
        if sub.returncode == 0 or "No available agent" not in sub.stdout + sub.stderr or time.monotonic() > deadline:
            return sub
        time.sleep(5)


def _agent_ports(base: int) -> list[str]:
    """The node's agent ports, away from Ray's fixed defaults (52365 and a random gRPC one): an embedded Ray
    running beside the tests (a user's run) holds 52365, and the head's job agent then never comes up ("No
    available agent to submit job")."""
    return [f"--dashboard-agent-listen-port={base}", f"--dashboard-agent-grpc-port={base + 1}"]


def _stop(*temps: Path) -> None:
    """Stop the clusters these tests started, found by their temp dirs, and nothing else: `ray stop --force`
    kills every Ray process on the machine, a user's own run beside the tests included."""
    import psutil

    marks = [re.compile(re.escape(str(t)) + r"(/|\s|$)") for t in temps]  # not /tmp/x_12 for /tmp/x_1
    procs = []
    for p in psutil.process_iter(["cmdline"]):
        try:
            if any(m.search(" ".join(p.info["cmdline"] or [])) for m in marks):
                procs += [p, *p.children(recursive=True)]
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            pass
    for p in procs:
        try:
            p.terminate()
        except psutil.NoSuchProcess:
            pass
    _, alive = psutil.wait_procs(procs, timeout=15)
    for p in alive:
        try:
            p.kill()
        except psutil.NoSuchProcess:
            pass


def test_ray_job_submit_runs_the_pipeline(perturbed_pool, tmp_path):
    env = {**os.environ, "RAY_AUTH_MODE": "disabled", "RAY_ADDRESS": ""}
    env.pop("RAY_ADDRESS")
    temp = Path("/tmp") / f"arm_ray_head_{os.getpid()}"  # short: Ray's socket paths must stay under 107 chars
    port, dash = 26379 + os.getpid() % 1000, 28265 + os.getpid() % 1000
    cfg_path = tmp_path / "job.yaml"
    cfg_path.write_text(yaml.safe_dump(tiny_config(perturbed_pool)))
    out = tmp_path / "run"
    started = _ray("start", "--head", "--node-ip-address=127.0.0.1", f"--port={port}", "--num-cpus=2",
                   *_agent_ports(30400 + 2 * (os.getpid() % 1000)),
                   "--dashboard-host=127.0.0.1", f"--dashboard-port={dash}", "--include-dashboard=true",
                   f"--temp-dir={temp}", env=env)
    assert started.returncode == 0, started.stderr[-3000:]
    try:
        sub = _submit(f"--address=http://127.0.0.1:{dash}", f"--working-dir={ROOT}", "--",
                   sys.executable, "-m", "arm_ray.main", "--config", str(cfg_path), "--output", str(out),
                   env=env, timeout=600)
        assert sub.returncode == 0, (sub.stdout + sub.stderr)[-4000:]
        assert "ARM run written to" in sub.stdout
        assert (out / "model" / "model.safetensors").is_file() and (out / "report.json").is_file()
    finally:
        _stop(temp)
        shutil.rmtree(temp, ignore_errors=True)


def _descendant_named(pid: int, prefix: str) -> bool:
    import psutil

    try:
        procs = psutil.Process(pid).children(recursive=True)
    except psutil.NoSuchProcess:
        return False
    for c in procs:
        try:
            if " ".join(c.cmdline()).startswith(prefix):
                return True
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            continue
    return False


def test_ctrl_c_prints_one_line_and_exits_130(perturbed_pool, tmp_path):
    """SIGINT while the coordinator runs on an embedded Ray: one error line, exit code 130, no traceback, and
    nothing in the output directory that looks like a finished run."""
    cfg_path = tmp_path / "job.yaml"
    cfg_path.write_text(yaml.safe_dump(tiny_config(perturbed_pool)))
    out = tmp_path / "run"
    env = {**os.environ, "RAY_AUTH_MODE": "disabled", "ARM_RAY_TMP": str(Path("/tmp") / f"arm_ray_int_{os.getpid()}")}
    env.pop("RAY_ADDRESS", None)
    p = subprocess.Popen([sys.executable, "-m", "arm_ray.main", "--config", str(cfg_path), "--output", str(out)],
                         cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.time() + 120
        while time.time() < deadline and p.poll() is None and not _descendant_named(p.pid, "ray::TracerActor"):
            time.sleep(0.1)  # interrupt once a tracer actor runs: the coordinator is mid-run, whatever the speed
        assert p.poll() is None, "the run ended before a tracer actor was seen"
        p.send_signal(signal.SIGINT)
        stdout, stderr = p.communicate(timeout=120)
    finally:
        if p.poll() is None:
            p.kill()
        shutil.rmtree(env["ARM_RAY_TMP"], ignore_errors=True)
    assert p.returncode == 130, stderr[-3000:]
    assert "Traceback" not in stderr and "error: interrupted" in stderr
    assert not (out / "model").exists() and not (out / "report.json").exists()


def test_two_node_cluster_runs_the_demo_and_reports_placement(trained_pool, tmp_path):
    """A two-node Ray cluster on this machine (a head and a second `ray start --address`, each with one CPU and
    its own temp dir), the demo config cut small submitted with `ray job submit`: tracers and rollout actors
    land on both nodes (each asks more than half a node's CPU), report.json names each actor's node, and the
    output directory (which both nodes see) holds the run."""
    from tests.conftest import small_demo_config

    env = {**os.environ, "RAY_AUTH_MODE": "disabled"}
    env.pop("RAY_ADDRESS", None)
    tag = os.getpid()
    heads = [Path("/tmp") / f"arm_ray_n{i}_{tag}" for i in (1, 2)]  # short: socket paths stay under 107 chars
    port, dash = 27379 + tag % 1000, 29265 + tag % 1000
    cfg = small_demo_config(trained_pool, {"max_new_tokens": 16})
    # 0.55 + 0.55 CPUs of tracers cannot share a 1-CPU node; the coordinator (0.1) leaves room for one rollout
    # actor (0.3) beside each tracer
    cfg["resources"].update(tracers=2, tracer_num_cpus=0.55, rollout_actors=2, rollout_num_cpus=0.3,
                            coordinator_num_cpus=0.1, torch_threads=1, actor_start_timeout_s=300)
    cfg_path = tmp_path / "job.yaml"
    cfg_path.write_text(yaml.safe_dump(cfg))
    out = tmp_path / "run"
    try:
        head = _ray("start", "--head", "--node-ip-address=127.0.0.1", f"--port={port}", "--num-cpus=1",
                    *_agent_ports(32400 + 4 * (tag % 1000)),
                    "--dashboard-host=127.0.0.1", f"--dashboard-port={dash}", "--include-dashboard=true",
                    f"--temp-dir={heads[0]}", env=env)
        assert head.returncode == 0, head.stderr[-3000:]
        second = _ray("start", f"--address=127.0.0.1:{port}", "--node-ip-address=127.0.0.1", "--num-cpus=1",
                      *_agent_ports(32402 + 4 * (tag % 1000)),
                      f"--temp-dir={heads[1]}", env=env)
        assert second.returncode == 0, second.stderr[-3000:]
        sub = _submit(f"--address=http://127.0.0.1:{dash}", f"--working-dir={ROOT}", "--",
                   sys.executable, "-m", "arm_ray.main", "--config", str(cfg_path), "--output", str(out),
                   env=env, timeout=900)
        assert sub.returncode == 0, (sub.stdout + sub.stderr)[-4000:]
        report = json.loads((out / "report.json").read_text())
        where = report["placement"]
        tracers = {p["node_id"] for p in where if p["actor"] == "tracer"}
        rollouts = {p["node_id"] for p in where if p["actor"] == "rollout"}
        assert len(tracers) == 2 and len(rollouts) == 2, where
        assert all(p["node_ip"] and p["pid"] > 0 and p["gpus"] == [] for p in where)
        assert (out / "model" / "model.safetensors").is_file() and (out / "eval.parquet").is_file()
    finally:
        _stop(*heads)
        for h in heads:
            shutil.rmtree(h, ignore_errors=True)


def test_a_driver_killed_in_each_stage_resumes_to_the_same_files(trained_pool, tmp_path):
    """`python -m arm_ray.main` on an embedded Ray, killed with SIGKILL as each stage's record appears (mid-trace,
    then in selection, dev rollouts, transplant and test rollouts), then run again with --resume: every process
    the driver started is gone within seconds of each kill, and the last resume writes the files an
    uninterrupted run writes, with report.json saying which stages it reused."""
    from tests.conftest import small_demo_config

    cfg = small_demo_config(trained_pool, {"max_new_tokens": 16})
    cfg["resources"].update(tracers=1, tracer_num_cpus=0.5, rollout_actors=1, rollout_num_cpus=0.5)
    cfg_path = tmp_path / "job.yaml"
    cfg_path.write_text(yaml.safe_dump(cfg))
    env = {**os.environ, "RAY_AUTH_MODE": "disabled"}
    env.pop("RAY_ADDRESS", None)

    temps, logs = [], []

    def start(out: Path, *flags: str) -> subprocess.Popen:
        temps.append(tempfile.mkdtemp(prefix="arm_k_", dir="/tmp"))  # short: Ray's socket paths
        logs.append(tmp_path / f"driver{len(logs)}.log")
        return subprocess.Popen([sys.executable, "-m", "arm_ray.main", "--config", str(cfg_path), "--output",
                                 str(out), *flags], cwd=ROOT, env={**env, "ARM_RAY_TMP": temps[-1]},
                                stdout=logs[-1].open("w"), stderr=subprocess.STDOUT, text=True)

    try:
        check_kills_and_resume(tmp_path, start, logs)
    finally:
        for t in temps:
            shutil.rmtree(t, ignore_errors=True)


def check_kills_and_resume(tmp_path: Path, start, logs: list[Path]) -> None:
    import psutil

    from tests.test_stages import outputs

    whole = tmp_path / "whole"
    p = start(whole)
    assert p.wait(timeout=900) == 0, logs[-1].read_text()[-4000:]

    out, store = tmp_path / "run", tmp_path / "run" / ".arm_ray"

    def rolling_out(seen) -> bool:  # a rollout actor is up: the rollout stage is under way
        for c in seen.values():
            try:
                if "RolloutActor" in " ".join(c.cmdline()) and c.status() != psutil.STATUS_ZOMBIE:
                    return True
            except psutil.Error:  # ended since it was seen
                pass
        return False

    points = [("trace", lambda seen: any((store / "traces").glob("*.npz"))),
              ("select", lambda seen: (out / "saliency.parquet").exists()),
              ("dev rollouts", lambda seen: (store / "backbone.json").exists() and rolling_out(seen)),
              ("transplant", lambda seen: (store / "dev_rollouts.json").exists()),
              ("test rollouts", lambda seen: (store / "transplant.json").exists() and rolling_out(seen))]
    for i, (stage, due) in enumerate(points):
        p = start(out, *(["--resume"] if i else []))
        seen: dict[int, psutil.Process] = {}
        deadline = time.time() + 600
        while p.poll() is None and time.time() < deadline:
            try:
                seen |= {c.pid: c for c in psutil.Process(p.pid).children(recursive=True)}
                if due(seen):
                    break
            except psutil.Error:  # a process that ended between the listing and the look
                pass
            time.sleep(0.05)
        assert p.poll() is None, f"the run ended before it was killed in {stage}: {logs[-1].read_text()[-3000:]}"
        os.kill(p.pid, signal.SIGKILL)
        p.wait()
        _, alive = psutil.wait_procs(list(seen.values()), timeout=20)
        assert not alive, f"killed in {stage}: still running 20 s later: {[a.cmdline()[:2] for a in alive]}"
        assert not (out / "report.json").exists()
    p = start(out, "--resume")
    p.wait(timeout=900)
    log = logs[-1].read_text()
    assert p.returncode == 0, log[-4000:]
    assert "resumed: trace reused" in log
    report = json.loads((out / "report.json").read_text())
    assert report["stages"] == {"trace": "reused", "backbone": "reused", "dev_rollouts": "reused",
                                "transplant": "reused", "test_rollouts": "computed"}
    assert outputs(out) == outputs(whole)
