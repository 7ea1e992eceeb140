"""A throwaway Linux machine for one AgentBench OS episode, in place of the official harness's Docker container.

What confines it:

- a user namespace whose ids 0..65535 are the caller's subordinate ids (`rootfs.sub_ids`): its root can add users
  and chown files in its own tree, and is an unprivileged uid on the host with no capability there;
- a mount namespace in which the built tree (`rootfs.py`) is the read-only lower layer of an overlay whose upper
  layer is a tmpfs of `disk_mb`: every write lands in memory and is gone with the namespace, so nothing is left on
  the host even when the process that started it is killed;
- bubblewrap, which makes that overlay the root, with fresh /proc (its one directory only the host's root may
  read, /proc/tty/driver, hidden, as Docker's root could read it) and /dev and no network, IPC, UTS or PID
  namespace shared with the host, and keeps `sleep infinity` as the machine's one long-lived process;
- `nproc` processes at most (RLIMIT_NPROC, counted per user namespace), a time limit on every command, and a cap
  on the output kept.

Commands reach the machine the way Docker's reach a container: `run` starts an independent process as root
(`docker exec`, the official harness's `execute_independent`), `Shell` is one persistent `bash --login` on a
terminal (its `execute`). The keeper dies with the thread-owning process (`owned.start_owned`), and its PID
namespace takes every process inside with it.
"""

from __future__ import annotations

import json
import os
import pty
import re
import resource
import secrets
import select
import shutil
import signal
import subprocess
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from arm_ray.benchmarks import rootfs
from arm_ray.benchmarks.owned import start_owned
from arm_ray.errors import ConfigError

# the host tools that set the machine up run with no more than this: a host LD_PRELOAD (vLLM sets one) would
# otherwise reach the first program started inside, whose loader complains about it in the output
HOST_ENV = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin"}
ENV = ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "HOME=/root", "HOSTNAME=arm-os"]
# Docker's open-file limit: a task's init writes `echo 123321>/var/f`, which bash reads as a redirect of fd 123321
# (1048576); raising the hard limit needs CAP_SYS_RESOURCE, so the machine gets the caller's hard limit, up to that
NOFILE = min(resource.getrlimit(resource.RLIMIT_NOFILE)[1], 1 << 20)
OUTPUT_CAP = 1 << 20  # bytes of a command's output kept; the rest is read and dropped
START_TIMEOUT_S = 20.0

# Mount the throwaway overlay, then hand it to bubblewrap as the root. $1 mount point for the tmpfs, $2 the tree,
# $3 bubblewrap's info fd, $4 tmpfs size; what follows them: bubblewrap options of the caller (host folders bound in).
_KEEPER = ('set -e; m="$1" tree="$2" fd="$3" size="$4"; shift 4; mount -t tmpfs -o "size=$size,mode=755" arm-os "$m"; '
           'mkdir "$m/upper" "$m/work" "$m/root"; '
           'mount -t overlay overlay -o "lowerdir=$tree,upperdir=$m/upper,workdir=$m/work" "$m/root"; '
           'exec bwrap --bind "$m/root" / --proc /proc --tmpfs /proc/tty/driver --dev /dev --unshare-ipc '
           '--unshare-pid --unshare-net --unshare-uts --unshare-cgroup-try --hostname arm-os --die-with-parent '
           '--info-fd "$fd" --chdir / --clearenv --setenv PATH /usr/bin:/bin "$@" sleep infinity')

# The official harness's clean-up of what a terminal prints (prompts, colours, title strings, bracketed paste)
_CLEAN = [re.compile(p) for p in (rb"\x1b.+@.+[#|$] ", rb"\x1b\[[0-9;]*[a-zA-Z]", rb"\x1b\][0-9]*;[^\x07]*\x07",
                                   rb"\x1b\[\?2004[hl]", rb"\x07")]


def clean(raw: bytes) -> str:
    for pattern in _CLEAN:
        raw = pattern.sub(b"", raw)
    return raw.decode("utf-8", "replace").replace("\r\n", "\n")


@dataclass
class Result:
    output: str
    returncode: int
    timed_out: bool


def _keep(out: bytearray, chunk: bytes) -> None:
    """Append what still fits under OUTPUT_CAP."""
    if len(out) < OUTPUT_CAP:
        out += chunk[: OUTPUT_CAP - len(out)]


def _read_capped(p: subprocess.Popen, deadline: float) -> tuple[bytes, bool]:
    """stdout up to OUTPUT_CAP, the rest drained, until the process exits; (output, timed out).

    Not until the pipe closes: what the process left running in the background (an init script's `sleep 60 &`)
    holds the pipe, and docker exec returns when the process itself is done."""
    out, fd = bytearray(), p.stdout.fileno()
    os.set_blocking(fd, False)
    while True:
        exited = p.poll() is not None
        while select.select([fd], [], [], 0 if exited else min(max(deadline - time.monotonic(), 0), 0.05))[0]:
            chunk = os.read(fd, 65536)
            if not chunk:
                return bytes(out), False
            _keep(out, chunk)
        if exited:
            return bytes(out), False
        if time.monotonic() > deadline:
            return bytes(out), True


class Sandbox:
    def __init__(self, home: Path, disk_mb: int = 1024, nproc: int = 512, binds: tuple[tuple[str, str], ...] = ()):
        """`binds`: (host folder, path inside) pairs shared with the host (OfficeBench's /testbed); the machine's
        root is another host uid, so a shared folder must let others write where the machine writes."""
        self.home, self.disk_mb, self.nproc = Path(home), disk_mb, nproc
        self.binds = tuple(binds)
        self.uid, self.gid = rootfs.sub_ids()
        self.keeper: subprocess.Popen | None = None
        self.pid: int | None = None  # the machine's `sleep infinity`, as the host sees it
        self._lock = threading.Lock()

    def start(self) -> "Sandbox":
        if shutil.which("bwrap") is None:
            raise ConfigError("bubblewrap (`bwrap`) is not installed; the OS sandbox needs it: apt-get install -y "
                              "bubblewrap (scripts/setup.sh does)")
        read, write = os.pipe()
        argv = [*rootfs.mapped(self.uid, self.gid), "--mount", "--propagation", "private", "--kill-child", "--fork",
                "sh", "-c", _KEEPER, "sh", str(self.home / "mnt"), str(self.home / "rootfs"), str(write),
                f"{self.disk_mb}m", *[a for host, inside in self.binds for a in ("--bind", str(host), inside)]]
        try:
            self.keeper = start_owned(self._limited(argv), "os-sandbox", signal.SIGKILL, pass_fds=(write,),
                                      env=HOST_ENV, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                      stderr=subprocess.PIPE)
        finally:
            os.close(write)
        info, deadline = b"", time.monotonic() + START_TIMEOUT_S
        try:
            while b"}" not in info and time.monotonic() < deadline:
                if select.select([read], [], [], 0.2)[0]:
                    chunk = os.read(read, 4096)
                    if not chunk:
                        break
                    info += chunk
        finally:
            os.close(read)
        try:
            self.pid = json.loads(info)["child-pid"]
            self._wait_for_keeper(deadline)
        except (ValueError, KeyError, OSError, TimeoutError):
            keeper = self.keeper
            self.close()
            err = keeper.stderr.read().decode(errors="replace").strip()
            raise ConfigError(f"the OS sandbox did not start: {err[-600:] or 'no answer from bubblewrap'} (it needs "
                              f"user namespaces with the subordinate ids of /etc/subuid and overlay mounts in them)")
        return self

    def _wait_for_keeper(self, deadline: float) -> None:
        """bubblewrap reports its child before it has set up the root and the working directory: wait for the
        command it then runs (`sleep infinity`), and enter the machine through that process."""
        while True:
            children = Path(f"/proc/{self.pid}/task/{self.pid}/children").read_text().split()
            if children and Path(f"/proc/{children[0]}/comm").read_text().strip() == "sleep":
                self.pid = int(children[0])
                return
            if time.monotonic() > deadline:
                raise TimeoutError("the sandbox's root was not set up in time")
            time.sleep(0.002)

    def _limited(self, argv: list[str]) -> list[str]:
        return ["prlimit", f"--nproc={self.nproc}", f"--nofile={NOFILE}", "--", *argv]

    def _enter(self, argv: list[str]) -> list[str]:
        """Run argv inside the machine as its root, in its root directory, with only `ENV` (as `docker exec`)."""
        if self.pid is None:
            raise RuntimeError("the sandbox is not running")
        return self._limited(["nsenter", "-t", str(self.pid), "-a", "-r", "-w", "env", "-i", *ENV, *argv])

    def run(self, argv: list[str], timeout: float = 60.0) -> Result:
        """An independent process (stdout and stderr together, as docker exec gives them), killed after `timeout`."""
        inner = ["timeout", "-s", "KILL", str(timeout), *argv]  # kills it inside, where the host's kill cannot reach
        p = subprocess.Popen(self._enter(inner), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                             stderr=subprocess.STDOUT, env=HOST_ENV)
        out, timed_out = _read_capped(p, time.monotonic() + timeout + 5)
        if timed_out:
            p.kill()
        code = p.wait()
        p.stdout.close()
        # `timeout` kills with SIGKILL and then itself with it; nsenter passes the signal on
        killed = code in (-signal.SIGKILL, 128 + signal.SIGKILL)
        return Result(out.decode("utf-8", "replace"), code, timed_out or killed)

    def shell(self) -> "Shell":
        return Shell(self)

    def close(self) -> None:
        with self._lock:
            keeper, self.keeper, self.pid = self.keeper, None, None
        if keeper is not None and keeper.poll() is None:
            keeper.kill()  # unshare --kill-child passes it on; the PID namespace ends with bubblewrap
            keeper.wait()

    def __enter__(self) -> "Sandbox":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.close()


class Shell:
    """One interactive `bash --login` on a terminal, fed command text as a person types it.

    A command is done when a marker line, printed by a `printf` sent after it, comes back; its output is what came
    before (the official harness instead waits for the next prompt). A command still running at `timeout` gets a
    Ctrl-C, as a person would send, and the shell is used on; a shell that exits is started again for the next
    command.
    """

    def __init__(self, sandbox: Sandbox):
        self.sandbox = sandbox
        self.nonce = secrets.token_hex(6)
        self.process: subprocess.Popen | None = None
        self.master: int | None = None
        self._done = re.compile(rb"__ARM_DONE_" + self.nonce.encode() + rb":(\d+)\r?\n")

    def open(self) -> None:
        master, slave = pty.openpty()
        try:
            argv = ["setsid", "--ctty", *self.sandbox._enter(["TERM=xterm", "bash", "--login"])]
            self.process = subprocess.Popen(argv, stdin=slave, stdout=slave, stderr=slave, close_fds=True, env=HOST_ENV)
        finally:
            os.close(slave)
        self.master = master
        os.set_blocking(master, False)
        # no echo of what is typed, no prompts, no bracketed-paste codes: the output is the command's alone
        self._exchange("stty -echo cols 80 rows 24; bind 'set enable-bracketed-paste off' 2>/dev/null; "
                       "PS1=''; PS2=''; unset PROMPT_COMMAND", 10.0)

    def _marker(self) -> bytes:
        return f"printf '%s%s:%s\\n' __ARM_DONE_ {self.nonce} $?\n".encode()

    def _write(self, data: bytes, deadline: float) -> None:
        while data and time.monotonic() < deadline:
            if select.select([], [self.master], [], 0.2)[1]:
                try:
                    data = data[os.write(self.master, data):]
                except BlockingIOError:
                    continue

    def _read_until_done(self, deadline: float) -> tuple[bytes, int | None, bool]:
        """(output, the command's exit status once its marker came back, shell gone)."""
        out, tail, seen = bytearray(), b"", 0  # seen: bytes read so far; tail: the last of them, for a split marker
        while time.monotonic() < deadline:
            if not select.select([self.master], [], [], 0.2)[0]:
                continue
            try:
                chunk = os.read(self.master, 65536)
            except BlockingIOError:
                continue
            except OSError:  # EIO: the shell and everything on its terminal are gone
                return bytes(out), None, True
            if not chunk:
                return bytes(out), None, True
            _keep(out, chunk)
            m = self._done.search(tail + chunk)
            if m:  # the output ends where the marker starts, even when it began in the read before
                return bytes(out[: seen - len(tail) + m.start()]), int(m.group(1)), False
            seen += len(chunk)
            tail = (tail + chunk)[-64:]
        return bytes(out), None, False

    def _exchange(self, command: str, timeout: float) -> tuple[bytes, int, bool]:
        """Type `command`; (raw output, exit status or -1 when unknown, whether it ran past `timeout`)."""
        deadline = time.monotonic() + timeout
        self._write(command.encode("utf-8") + b"\n" + self._marker(), deadline)
        out, status, gone = self._read_until_done(deadline)
        if gone:
            self._drop()
        elif status is None:  # Ctrl-C to what still runs, then wait for the shell to answer again
            self._write(b"\x03", time.monotonic() + 2)
            self._write(b"\n" + self._marker(), time.monotonic() + 2)
            if self._read_until_done(time.monotonic() + 5)[1] is None:
                self._drop()
            return out, -1, True
        return out, -1 if status is None else status, False

    def run(self, command: str, timeout: float = 30.0) -> Result:
        """Type `command` (and Enter); its output, cleaned as the official harness cleans it, and exit status."""
        if self.process is None:
            self.open()
        out, status, timed_out = self._exchange(command, timeout)
        # a command that reads its input (cat, read) swallows the marker's printf and may print it back
        shown = out.replace(self._marker(), b"").replace(self._marker()[:-1], b"")
        return Result(clean(shown), status, timed_out)

    def _drop(self) -> None:
        if self.process is not None:
            if self.process.poll() is None:
                self.process.kill()
            self.process.wait()
            self.process = None
        if self.master is not None:
            os.close(self.master)
            self.master = None

    def close(self) -> None:
        self._drop()
