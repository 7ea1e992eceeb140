"""Blocks of rows: how large tensors are cut and put back together (merges, AIM's relaxation).

A module of its own so that the pool and what the pool calls (AIM, RAM, WIDEN) share it without importing each other.
"""

from __future__ import annotations

from typing import Iterator

import torch


def spans(shape: tuple[int, ...], step: int) -> list[tuple[int, int]]:
    """(start, stop) of each block of `step` rows along the first axis; the last one may be shorter."""
    return [(start, min(shape[0], start + step)) for start in range(0, shape[0], step)]


def assemble(shape: tuple[int, ...], parts: Iterator[tuple[tuple[int, int], torch.Tensor]]) -> torch.Tensor:
    """One tensor from its blocks of rows, allocated once the first block shows its dtype and device."""
    out = None
    for (start, stop), part in parts:
        if out is None:
            out = torch.empty(shape, dtype=part.dtype, device=part.device)
        out[start:stop] = part
        del part
    return out
