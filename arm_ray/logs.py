"""Logging for the driver and the actors: plain lines on stderr, `warning:` / `error:` before the serious ones."""

from __future__ import annotations

import logging


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
