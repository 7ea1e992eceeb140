"""`python -m arm_ray.watchdog PID`: when process PID ends, end the processes it had started.

The driver starts one beside an embedded Ray. Killed with SIGKILL, the driver
can clean nothing up: Ray's server processes follow it at once, but its agents
wait about a minute on a server that is gone, and a worker may be mid-write.
This process remembers the driver's descendants while the driver lives and,
once it has ended, stops those still running (SIGTERM, then SIGKILL), and any
process whose command line names the embedded Ray's session directory (a worker
started just before the kill, between two looks).
"""

from __future__ import annotations

import os
import subprocess
import sys
import time

POLL_S = 0.2
GRACE_S = 3.0


def start(session_dir: str, pid: int | None = None) -> subprocess.Popen:
    """Watch `pid` (default: this process), whose Ray session keeps its files in `session_dir`, from a process
    of its own session (Ctrl-C does not reach it)."""
    return subprocess.Popen([sys.executable, "-m", "arm_ray.watchdog", str(pid or os.getpid()), session_dir],
                            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)


def _ended(p) -> bool:
    import psutil

    try:
        return not p.is_running() or p.status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def watch(pid: int, session_dir: str | None = None, poll_s: float = POLL_S, grace_s: float = GRACE_S) -> int:
    """Wait for `pid` to end, then stop its remembered descendants and the processes naming `session_dir`; returns
    how many were still running."""
    import psutil

    try:
        driver = psutil.Process(pid)
    except psutil.NoSuchProcess:
        driver = None
    known: dict[int, psutil.Process] = {}  # psutil checks create times: a reused pid is never taken for one
    while driver is not None and not _ended(driver):
        try:
            for c in driver.children(recursive=True):
                known.setdefault(c.pid, c)
        except psutil.NoSuchProcess:
            break
        time.sleep(poll_s)
    if session_dir:
        for p in psutil.process_iter():
            try:
                if any(session_dir in a for a in p.cmdline()):
                    known.setdefault(p.pid, p)
            except psutil.Error:
                pass
    left = [p for p in known.values() if p.pid != os.getpid() and not _ended(p)]
    for p in left:
        try:
            p.terminate()
        except psutil.NoSuchProcess:
            pass
    _, alive = psutil.wait_procs(left, timeout=grace_s)
    for p in alive:
        try:
            p.kill()
        except psutil.NoSuchProcess:
            pass
    return len(left)


if __name__ == "__main__":
    watch(int(sys.argv[1]), sys.argv[2] if len(sys.argv) > 2 else None)
