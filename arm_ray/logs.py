"""Logging for the driver and the actors: plain lines on stderr, `warning:` / `error:` before the serious ones;
and a process's engine output sent to a file of the run (`to_file`)."""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path


class _Plain(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        text = record.getMessage()
        return f"{record.levelname.lower()}: {text}" if record.levelno >= logging.WARNING else text


def setup(level: int = logging.INFO) -> None:
    """Show the `arm_ray` loggers' messages (once per process; Ray actors call it too)."""
    logger = logging.getLogger("arm_ray")
    logger.setLevel(level)
    if not logger.handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(_Plain())
        logger.addHandler(handler)
        logger.propagate = False


def to_file(path: Path) -> None:
    """Send everything this process writes to stdout and stderr (file descriptors 1 and 2, so vLLM's log lines, the
    C libraries' notices and Python's warnings alike) to `path`, appended; `arm_ray`'s own messages go there too,
    and its warnings and errors still reach the console. A rollout actor calls it before vLLM is imported."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    sys.stdout.flush()
    sys.stderr.flush()
    console = os.fdopen(os.dup(2), "w", buffering=1)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    os.close(fd)
    setup()
    handler = logging.StreamHandler(console)
    handler.setLevel(logging.WARNING)
    handler.setFormatter(_Plain())
    logging.getLogger("arm_ray").addHandler(handler)
