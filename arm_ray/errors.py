"""Errors a user can act on. Each names the file, field or model at fault."""


class ArmError(Exception):
    """Base class: printed to the user without a traceback by `arm_ray.main`."""


class ConfigError(ArmError):
    pass


class DataError(ArmError):
    pass


class CheckpointError(ArmError):
    pass
