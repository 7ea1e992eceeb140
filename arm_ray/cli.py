"""What both command lines (`arm_ray.main`, `arm_ray.analyze`) share: starting or joining Ray, reading an actor's
result, and the exit-code wrapper."""

from __future__ import annotations

import logging
import os
import tempfile

from arm_ray import logs
from arm_ray.errors import ArmError

log = logging.getLogger("arm_ray.cli")


def init_ray(address: str | None):
    """Join `address` (or RAY_ADDRESS, as `ray job submit` sets it); otherwise start an embedded local Ray."""
    import ray

    address = address or os.environ.get("RAY_ADDRESS")
    if address:
        ray.init(address=address)
        return
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")  # an embedded, loopback-only instance
    from arm_ray import watchdog

    temp_dir = os.environ.get("ARM_RAY_TMP") or tempfile.mkdtemp(prefix="arm_ray_")
    ctx = ray.init(include_dashboard=False, _temp_dir=temp_dir)
    watchdog.start(ctx.address_info["session_dir"])  # a driver killed with SIGKILL leaves no Ray process behind


def get_remote(ref):
    """ray.get, with a user error (ArmError) raised inside the actor re-raised as itself (one line, no traceback)."""
    import ray

    try:
        return ray.get(ref)
    except ray.exceptions.RayTaskError as e:
        cause = getattr(e, "cause", None)
        if isinstance(cause, ArmError):
            raise cause from None
        raise


def guarded(command, argv, interrupted: str) -> int:
    """A command line's exit code: 0, or 2 with one line for a user error, 130 with one line for Ctrl-C (the
    shell's code for SIGINT; outputs are written atomically)."""
    logs.setup()
    try:
        command(argv)
    except ArmError as e:
        log.error(str(e))
        return 2
    except KeyboardInterrupt:
        log.error(interrupted)
        return 130
    return 0
