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
