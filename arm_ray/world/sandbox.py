"""Run a model's shell command confined by bubblewrap (never on the host unconfined).

The command sees a read-only /usr (plus the /bin, /lib links), a fresh /proc,
/dev and /tmp, and the task directory as its only writable place (/task). It
has no network (all namespaces unshared), no host /etc (only /etc/alternatives,
the command links) or /home, no
environment from the host, runs as an unprivileged uid, and is killed after
a time limit. Without `bwrap` nothing runs: `SandboxUnavailable` says how to
install it.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path


class SandboxUnavailable(RuntimeError):
    pass


@dataclass
class Result:
    output: str
    returncode: int
    timed_out: bool


def bwrap_path() -> str:
    path = shutil.which("bwrap")
    if path is None:
        raise SandboxUnavailable("bubblewrap (`bwrap`) is not installed; the shell suite will not run model "
                                 "commands unconfined. Install it: apt-get install -y bubblewrap "
                                 "(scripts/setup.sh does this)")
    return path


def _ro_system_binds() -> list[str]:
    args = ["--ro-bind", "/usr", "/usr"]
    for d in ("bin", "lib", "lib64", "sbin"):
        p = Path("/") / d
        if p.is_symlink():
            args += ["--symlink", os.readlink(p), f"/{d}"]
        elif p.is_dir():
            args += ["--ro-bind", str(p), f"/{d}"]
    # Debian resolves awk, editors, ... through these links; nothing else of the host's /etc is visible
    return args + ["--ro-bind-try", "/etc/alternatives", "/etc/alternatives"]


def run(command: str, workdir: Path, timeout: float = 10.0) -> Result:
    argv = [bwrap_path(), *_ro_system_binds(),
            "--proc", "/proc", "--dev", "/dev", "--tmpfs", "/tmp",
            "--bind", str(Path(workdir).resolve()), "/task", "--chdir", "/task",
            "--remount-ro", "/",  # the sandbox's own root too: /task and /tmp are the only writable places
            "--unshare-all", "--uid", "1000", "--gid", "1000", "--cap-drop", "ALL",
            "--die-with-parent", "--new-session", "--clearenv",
            "--setenv", "PATH", "/usr/bin:/bin", "--setenv", "HOME", "/task", "--setenv", "LC_ALL", "C",
            "bash", "-c", command]
    try:
        p = subprocess.run(argv, capture_output=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired as e:
        out = (e.stdout or b"") + (e.stderr or b"")
        return Result(out.decode("utf-8", "replace"), -9, True)
    if p.returncode != 0 and b"bwrap:" in p.stderr[:200] and not p.stdout:
        raise SandboxUnavailable(f"bubblewrap could not start the sandbox: {p.stderr.decode(errors='replace')}")
    return Result((p.stdout + p.stderr).decode("utf-8", "replace"), p.returncode, False)
