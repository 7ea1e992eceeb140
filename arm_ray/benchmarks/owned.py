"""Processes that die with the process that started them, even when it is killed.

The parent-death signal (PR_SET_PDEATHSIG) fires when the *thread* that forked a child ends, and the agent loop's
worker threads come and go while a server or sandbox must live on. So each such process is started, and waited
for, by a thread of its own that lives exactly as long as the process.
"""

from __future__ import annotations

import ctypes
import signal
import subprocess
import threading


def _die_with_parent(sig: int) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(1, sig)  # PR_SET_PDEATHSIG: sent when the thread that started us ends


def start_owned(argv: list[str], name: str, sig: int = signal.SIGTERM, **popen) -> subprocess.Popen:
    """`subprocess.Popen(argv, **popen)` from a thread that then waits for it; `sig` reaches it if we die.

    Raises what Popen raises (OSError for a missing binary)."""
    started = threading.Event()
    box: dict = {}

    def own() -> None:
        try:
            box["process"] = subprocess.Popen(argv, preexec_fn=lambda: _die_with_parent(sig), **popen)
        except BaseException as e:  # noqa: BLE001 - handed to the caller below
            box["error"] = e
            return
        finally:
            started.set()
        box["process"].wait()

    threading.Thread(target=own, daemon=True, name=name).start()
    started.wait()
    if "error" in box:
        raise box["error"]
    return box["process"]
