"""The AgentBench OS machine: a Debian tree in user, mount, PID and network namespaces, thrown away after use.

The escape attempts of tests/world/test_sandbox.py (the shell suite's sandbox), made against this one: no host
writes, no host files, no network, no host processes, process and time limits; and nothing outlives it.
"""

import os
import signal
import subprocess
import sys
import threading
import time

import pytest

from arm_ray.benchmarks import os_sandbox, rootfs
from arm_ray.benchmarks.os_sandbox import Sandbox


@pytest.fixture
def box(os_home):
    with Sandbox(os_home, disk_mb=64, nproc=64) as b:
        yield b


def sh(box, command, timeout=20.0):
    return box.run(["bash", "-c", command], timeout=timeout)


def test_root_inside_adds_users_and_chowns_but_is_an_unprivileged_host_uid(box, os_home):
    r = sh(box, "id -u; useradd -m ann && chown ann /srv && su ann -c 'id -un; touch /tmp/x' && stat -c %U /srv "
                "/tmp/x; cat /proc/self/uid_map")
    lines = r.output.split()
    assert r.returncode == 0 and lines[:4] == ["0", "ann", "ann", "ann"], r.output
    uid, _ = rootfs.sub_ids()
    assert lines[4:7] == ["0", str(uid), str(rootfs.IDS)]  # uid 0 inside is the first subordinate uid outside


def test_writes_go_to_the_throwaway_layer_never_to_the_tree_or_the_host(box, os_home, tmp_path):
    host_file = tmp_path / "host.txt"
    host_file.write_text("host")
    for target in ("/usr/bin/pwned", "/etc/passwd", "/pwned", f"{tmp_path}/pwned", f"{host_file}"):
        r = sh(box, f"mkdir -p $(dirname {target}) && echo x >> {target} && echo wrote")
        assert r.returncode == 0 and "wrote" in r.output, target  # the machine's root may write anywhere in it
    tree = os_home / "rootfs"
    assert not (tree / "usr/bin/pwned").exists() and not (tree / "pwned").exists()
    assert "x" not in (tree / "etc/passwd").read_text().splitlines()
    assert not (tmp_path / "pwned").exists() and host_file.read_text() == "host"
    with Sandbox(os_home, disk_mb=64) as fresh:  # the next machine starts from the tree again
        assert sh(fresh, "ls /usr/bin/pwned /pwned 2>&1; tail -1 /etc/passwd").output.count("No such file") == 2


def test_host_files_home_and_processes_are_out_of_sight(box, tmp_path):
    marker = tmp_path / "secret"
    marker.write_text("host-secret")
    r = sh(box, f"cat {marker} /root/.bash_history 2>&1; ls /root /home; cat /etc/hostname; grep -rs host-secret /tmp "
                "/var/tmp | head -1")
    assert "host-secret" not in r.output
    # only its own: bubblewrap's init, the keeper's sleep, this command
    assert set(sh(box, "ps -e -o comm=").output.split()) <= {"bwrap", "sleep", "timeout", "bash", "ps"}
    assert sh(box, f"kill -9 {os.getpid()} 2>&1; echo still").output.strip().endswith("still")


def test_no_network(box):
    r = sh(box, "exec 3<>/dev/tcp/1.1.1.1/53 && echo connected; ls /sys/class/net 2>&1; cat /proc/net/dev", 10)
    assert "connected" not in r.output and "eth0" not in r.output


def test_time_limit_on_scripts_and_on_shell_commands(box):
    t0 = time.monotonic()
    r = box.run(["sleep", "30"], timeout=1)
    assert r.timed_out and time.monotonic() - t0 < 10
    shell = box.shell()
    try:
        assert shell.run("x=kept", timeout=10).output == ""
        r = shell.run("sleep 30", timeout=1)
        assert r.timed_out
        assert shell.run("echo $x after", timeout=5).output == "kept after\n"  # a Ctrl-C, and the shell goes on
    finally:
        shell.close()


def test_process_limit_stops_a_fork_bomb_and_the_machine_survives(box):
    r = sh(box, "ulimit -u; for i in $(seq 200); do sleep 5 & done; echo all started", 30)
    assert r.output.startswith("64\n") and "fork: retry: Resource temporarily unavailable" in r.output
    assert "all started" not in r.output
    assert sh(box, "echo alive").output == "alive\n"


def test_output_is_capped(box):
    r = sh(box, "head -c 5000000 /dev/zero | tr '\\0' a")
    assert len(r.output) == os_sandbox.OUTPUT_CAP


def test_shell_keeps_state_and_reads_login_files_once(box):
    shell = box.shell()
    try:
        assert shell.run("cd /etc && export A=1").output == ""
        assert shell.run("pwd; echo $A; echo $((2+3))").output == "/etc\n1\n5\n"
        assert shell.run("false").returncode == 1 and shell.run("true").returncode == 0
        assert shell.run("ls --color=always /etc/apt | head -1").output == "apt.conf.d\n"  # colours cleaned
        assert shell.run("cat", timeout=1).timed_out  # reads its input: the marker is not shown back
        assert shell.run("exit").output == "logout\n"
        assert shell.run("pwd").output == "/\n"  # a fresh login shell
    finally:
        shell.close()


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return not f.read().split(") ")[1].startswith("Z")  # a zombie is gone too
    except (FileNotFoundError, ProcessLookupError):  # gone before the open, or between the open and the read
        return False


def _gone(pids: list[int], pattern: str, wait: float = 10.0) -> bool:
    """No process of `pids` and none whose command line holds `pattern` left (within `wait` seconds)."""
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline:
        left = subprocess.run(["pgrep", "-f", pattern], capture_output=True, text=True).stdout.split()
        if not left and not any(map(_alive, pids)):
            return True
        time.sleep(0.1)
    return False


def test_nothing_outlives_close_or_a_killed_owner(os_home):
    with Sandbox(os_home) as b:  # background processes, another user's, and the shell's
        sh(b, "sleep 301.5 & disown; useradd bo; su bo -c 'sleep 301.5 &'")
        b.shell().run("sleep 301.5 &")
        pids = [b.keeper.pid, b.pid]
        assert len(subprocess.run(["pgrep", "-f", "sleep 301.5"], capture_output=True, text=True).stdout.split()) == 3
    assert _gone(pids, "sleep 301.5")
    script = (f"import sys, time; sys.path.insert(0, {str(os.getcwd())!r})\n"
              "from arm_ray.benchmarks import rootfs\nfrom arm_ray.benchmarks.os_sandbox import Sandbox\n"
              "b = Sandbox(rootfs.locate()).start(); b.run(['bash', '-c', 'sleep 302.5 &'])\n"
              "print(b.keeper.pid, b.pid, flush=True); time.sleep(300)\n")
    p = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    pids = [int(x) for x in p.stdout.readline().split()]
    assert all(map(_alive, pids)) and subprocess.run(["pgrep", "-f", "sleep 302.5"]).returncode == 0
    p.send_signal(signal.SIGKILL)
    p.wait()
    assert _gone(pids, "sleep 302.5")


def test_missing_tree_or_ids_is_a_clear_error(tmp_path, monkeypatch):
    from arm_ray.errors import ConfigError

    with pytest.raises(ConfigError, match=r"no AgentBench OS root filesystem at .*python -m arm_ray.benchmarks.rootfs "
                                          r"build"):
        rootfs.locate(root=tmp_path)
    (tmp_path / "t").mkdir()
    (tmp_path / "t" / "manifest.json").write_text('{"uid": 1, "gid": 1}')
    with pytest.raises(ConfigError, match=r"built for subordinate ids 1/1.*--force"):
        rootfs.check_tree(tmp_path / "t")
    closed = tmp_path / "closed"
    (closed / "t").mkdir(parents=True)
    uid, gid = rootfs.sub_ids()
    (closed / "t" / "manifest.json").write_text(f'{{"uid": {uid}, "gid": {gid}}}')
    closed.chmod(0o700)
    with pytest.raises(ConfigError, match=r"closed .*cannot be passed by other users.*ARM_RAY_ROOTFS_DIR"):
        rootfs.check_tree(closed / "t")


def test_the_host_environment_does_not_reach_the_machine(os_home, monkeypatch):
    monkeypatch.setenv("LD_PRELOAD", "/nowhere/libgomp.so.1")  # as vLLM's CPU workers set it
    monkeypatch.setenv("ARM_SECRET", "host-value")
    with Sandbox(os_home) as b:
        shell = b.shell()
        try:
            assert shell.run("env | grep -c 'ARM_SECRET\\|LD_PRELOAD'; echo ok").output == "0\nok\n"
        finally:
            shell.close()
        names = b.run(["bash", "-c", "env | cut -d= -f1 | sort"]).output.split()
        assert names == ["HOME", "HOSTNAME", "PATH", "PWD", "SHLVL", "_"]  # ours, then bash's own


def test_a_marker_split_across_two_reads_is_not_left_in_the_output():
    shell = os_sandbox.Shell(sandbox=None)
    read, write = os.pipe()
    shell.master = read
    marker = f"__ARM_DONE_{shell.nonce}:3\n".encode()
    os.write(write, b"out\n" + marker[:7])
    threading.Timer(0.3, os.write, (write, marker[7:])).start()
    try:
        assert shell._read_until_done(time.monotonic() + 5) == (b"out\n", 3, False)
    finally:
        os.close(read)
        os.close(write)
