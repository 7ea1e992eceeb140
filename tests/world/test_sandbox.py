"""Model commands run only inside bubblewrap: no host files, no writes outside the task, no network."""

import pytest

from arm_ray.world import sandbox


@pytest.fixture
def workdir(tmp_path):
    tmp_path.chmod(0o777)
    return tmp_path


def test_task_directory_is_writable(workdir):
    r = sandbox.run("echo hello > out.txt && cat out.txt && pwd", workdir)
    assert r.returncode == 0 and r.output.split() == ["hello", "/task"]
    assert (workdir / "out.txt").read_text() == "hello\n"


def test_cannot_write_outside_the_task_directory(workdir, tmp_path_factory):
    outside = tmp_path_factory.mktemp("outside")
    for target in (f"{outside}/pwned", "/usr/pwned", "/pwned", "/etc/pwned", "../pwned"):
        r = sandbox.run(f"echo x > {target} && echo wrote", workdir)
        assert r.returncode != 0 and "wrote" not in r.output, target
    assert not (outside / "pwned").exists() and not (workdir.parent / "pwned").exists()


def test_cannot_read_host_files(workdir):
    r = sandbox.run("cat /etc/shadow; cat /etc/passwd; ls /root", workdir)
    assert r.returncode != 0 and "root:" not in r.output


def test_no_network(workdir):
    r = sandbox.run("exec 3<>/dev/tcp/1.1.1.1/53 && echo connected", workdir)
    assert "connected" not in r.output and r.returncode != 0
    r = sandbox.run("cat /sys/class/net/*/address 2>/dev/null; ls /sys/class/net 2>/dev/null", workdir)
    assert "eth0" not in r.output


def test_time_limit(workdir):
    r = sandbox.run("sleep 30", workdir, timeout=1)
    assert r.timed_out


def _path_without_bwrap(tmp_path, fake: str | None = None) -> str:
    """A PATH with bash and coreutils but no working bwrap (or a `fake` bwrap script)."""
    import os
    import shutil

    bindir = tmp_path / "bin"
    bindir.mkdir()
    for tool in ("bash", "sh", "env"):
        os.symlink(shutil.which(tool), bindir / tool)
    if fake is not None:
        (bindir / "bwrap").write_text(fake)
        (bindir / "bwrap").chmod(0o755)
    return str(bindir)


@pytest.mark.parametrize("fake", [None, "#!/bin/sh\necho 'bwrap: setting up uid map: Permission denied' >&2\nexit 1\n"])
def test_a_suite_whose_sandbox_cannot_run_stops_before_any_episode(tmp_path, monkeypatch, fake):
    from arm_ray.errors import ConfigError
    from arm_ray.rollout.run import SuiteRun, rollout
    from arm_ray.world.shell import ShellSuite

    ShellSuite().check()  # here it runs
    monkeypatch.setenv("PATH", _path_without_bwrap(tmp_path, fake))
    with pytest.raises(ConfigError, match=r"^suite: shell: .*(not installed|could not start the sandbox)"):
        ShellSuite().check()
    asked = []

    def policy(turns):
        asked.extend(turns)
        return ["Act: finish"] * len(turns)

    # not a run of zero scores: the job stops before its first episode, naming the benchmark
    with pytest.raises(ConfigError, match=r"^benchmarks\.os\.suite: shell: "):
        rollout(policy, "m", [SuiteRun("os", "shell", "test", 2)])
    assert asked == []
