"""Roles: trajectory formats, chat rendering, one span parser per benchmark, spans -> token positions.

`python -m arm_ray.roles inspect FILE --tokenizer DIR` shows what is traced.
"""

from arm_ray.roles.formats import Trajectory, load_trajectories
from arm_ray.roles.parsers import PARSERS, RESPONSE, find_spans
from arm_ray.roles.spans import TrajectoryEncoder

__all__ = ["PARSERS", "RESPONSE", "Trajectory", "TrajectoryEncoder", "find_spans", "load_trajectories"]
