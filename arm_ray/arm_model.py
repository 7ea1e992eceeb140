"""Eq. 6 on files: the backbone's checkpoint with each donor's moved neurons (gate/up rows, down column) written
in, as one function for the run, the analysis, and the benchmark scripts. `transplant` decides what moves;
`checkpoints` streams the tensors."""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Mapping

import numpy as np

from arm_ray import checkpoints, transplant
from arm_ray.architectures import mlp_names


def write_arm_model(backbone: checkpoints.Checkpoint, donors: Mapping[str, checkpoints.Checkpoint],
                    by_donor: Mapping[str, np.ndarray], out: Path, readme: str | None = None,
                    overwrite: bool = False, progress: Callable[[int], None] | None = None) -> int:
    """Write `out` (atomically): `backbone` with, for each donor, the neurons of its mask [L, d_ff] copied from
    `donors[donor]`. Returns the number of tensors changed."""
    names = mlp_names(backbone.config["model_type"])
    edits = {d: transplant.neuron_edits(m, names, set(backbone.tensors)) for d, m in by_donor.items()}
    return checkpoints.transplant_checkpoint(backbone, donors, edits, transplant.apply_edit, Path(out),
                                             readme=readme, overwrite=overwrite, progress=progress)
