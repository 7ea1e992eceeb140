"""`ray job submit` against a local `ray start --head` on loopback runs the pipeline end to end."""

import os
import shutil
import subprocess
import sys
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


def test_ray_job_submit_runs_the_pipeline(perturbed_pool, tmp_path):
    env = {**os.environ, "RAY_AUTH_MODE": "disabled", "RAY_ADDRESS": ""}
    env.pop("RAY_ADDRESS")
    temp = Path("/tmp") / f"arm_ray_head_{os.getpid()}"  # short: Ray's socket paths must stay under 107 chars
    port, dash = 26379 + os.getpid() % 1000, 28265 + os.getpid() % 1000
    cfg_path = tmp_path / "job.yaml"
    cfg_path.write_text(yaml.safe_dump(tiny_config(perturbed_pool)))
    out = tmp_path / "run"
    started = _ray("start", "--head", "--node-ip-address=127.0.0.1", f"--port={port}", "--num-cpus=2",
                   "--dashboard-host=127.0.0.1", f"--dashboard-port={dash}", "--include-dashboard=true",
                   f"--temp-dir={temp}", env=env)
    assert started.returncode == 0, started.stderr[-3000:]
    try:
        sub = _ray("job", "submit", f"--address=http://127.0.0.1:{dash}", f"--working-dir={ROOT}", "--",
                   sys.executable, "-m", "arm_ray.main", "--config", str(cfg_path), "--output", str(out),
                   env=env, timeout=600)
        assert sub.returncode == 0, (sub.stdout + sub.stderr)[-4000:]
        assert "ARM run written to" in sub.stdout
        assert (out / "model" / "model.safetensors").is_file() and (out / "report.json").is_file()
    finally:
        _ray("stop", "--force", env=env)
        time.sleep(1)
        shutil.rmtree(temp, ignore_errors=True)


def test_ctrl_c_prints_one_line_and_exits_130(perturbed_pool, tmp_path):
    """SIGINT while the coordinator runs on an embedded Ray: one error line, exit code 130, no traceback, and
    nothing in the output directory that looks like a finished run."""
    import signal

    cfg_path = tmp_path / "job.yaml"
    cfg_path.write_text(yaml.safe_dump(tiny_config(perturbed_pool)))
    out = tmp_path / "run"
    env = {**os.environ, "RAY_AUTH_MODE": "disabled", "ARM_RAY_TMP": str(Path("/tmp") / f"arm_ray_int_{os.getpid()}")}
    env.pop("RAY_ADDRESS", None)
    p = subprocess.Popen([sys.executable, "-m", "arm_ray.main", "--config", str(cfg_path), "--output", str(out)],
                         cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.time() + 120
        while time.time() < deadline and not (Path(env["ARM_RAY_TMP"]) / "session_latest").exists():
            time.sleep(0.2)  # Ray is up: the coordinator starts and traces next (the whole run takes ~30 s)
        time.sleep(4)
        p.send_signal(signal.SIGINT)
        stdout, stderr = p.communicate(timeout=120)
    finally:
        if p.poll() is None:
            p.kill()
        shutil.rmtree(env["ARM_RAY_TMP"], ignore_errors=True)
    assert p.returncode == 130, stderr[-3000:]
    assert "Traceback" not in stderr and "error: interrupted" in stderr
    assert not (out / "model").exists() and not (out / "report.json").exists()
