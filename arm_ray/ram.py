"""RAM and RAM+ as their authors define them (arXiv 2601.13572; github:xiangchi-yuan/mrl, `ram-main.py`).

Per entry of every tensor, with task vectors delta_i = theta_i - theta_base (in float32, as the authors load them):

    changed_i   = |delta_i| > threshold                      (threshold 1e-5)
    count       = number of experts that changed the entry
    rho_i       = |{entries changed by i and by another}| / |{entries changed by i}|, over the whole model
    lambda_i    = 1 + (r - 1) * min(1, rho_i)                (r = 1: RAM; r = 1.2 here for RAM+)
    delta       = mean of the changed delta_i                where count >= 2
                = lambda_i * delta_i                          where only expert i changed it
                = 0                                           where nobody did (the base is kept)
    theta       = theta_base + delta

mergekit's `ram` is another parametrisation (per tensor, lambda = 1 + r clip(rho, 0, alpha)). Every step above is
element-wise, so tensors are merged in blocks of rows; rho needs the whole model, so RAM+ first counts, block by
block, what each expert changed and where others changed it too (a first pass that holds nothing but counts), and
RAM (r = 1) skips that pass. Memory stays one block of each input, whatever the model.
"""

from __future__ import annotations

from typing import Callable, Iterator, Mapping, Sequence

import torch

from arm_ray.errors import ConfigError
from arm_ray.rows import assemble

DEFAULTS = {"ram_official": {"threshold": 1e-5, "r": 1.0}, "ramplus_official": {"threshold": 1e-5, "r": 1.2}}
METHODS = frozenset(DEFAULTS)

Read = Callable[[str, str, "tuple[int, int] | None"], torch.Tensor]


def check(p: Mapping[str, float], where: str) -> None:
    """What pool's check of names and types leaves: the ranges."""
    if p["threshold"] < 0:
        raise ConfigError(f"{where}.parameters.threshold: must be >= 0, got {p['threshold']:g}")
    if p["r"] < 1:
        raise ConfigError(f"{where}.parameters.r: must be >= 1 (1 is RAM, more rescales unshared updates), got "
                          f"{p['r']:g}")


def _deltas(base: torch.Tensor, experts: Sequence[torch.Tensor]) -> torch.Tensor:
    """[n, ...] float32 task vectors of one block."""
    b = base.float()
    return torch.stack([e.float() - b for e in experts])


def overlap_ratios(names: Sequence[str], experts: Sequence[str], blocks_of: Callable[[str], list], read: Read,
                   base: str, threshold: float) -> list[float]:
    """rho_i over the whole model: of the entries expert i changed, the share another expert changed too."""
    changed = torch.zeros(len(experts), dtype=torch.int64)
    shared = torch.zeros(len(experts), dtype=torch.int64)
    for name in names:
        for rows in blocks_of(name):
            mask = _deltas(read(base, name, rows), [read(e, name, rows) for e in experts]).abs() > threshold
            flat = mask.reshape(len(experts), -1)
            multi = flat.sum(dim=0) >= 2
            changed += flat.sum(dim=1).cpu()
            shared += (flat & multi).sum(dim=1).cpu()
    return [float(s) / float(c) if c else 0.0 for s, c in zip(shared.tolist(), changed.tolist())]


def scales(rho: Sequence[float], r: float) -> list[float]:
    return [1.0 + (r - 1.0) * max(0.0, min(1.0, x)) for x in rho]


def merge_block(base: torch.Tensor, experts: Sequence[torch.Tensor], lambdas: Sequence[float],
                threshold: float) -> torch.Tensor:
    """One block of the merged tensor, in the base's dtype."""
    deltas = _deltas(base, experts)
    mask = (deltas.abs() > threshold).to(deltas.dtype)
    count = mask.sum(dim=0)
    average = (deltas * mask).sum(dim=0) / count.clamp(min=1.0)
    lam = torch.tensor(list(lambdas), dtype=deltas.dtype, device=deltas.device)
    lam = lam.view(-1, *[1] * (deltas.dim() - 1))
    alone = (deltas * mask * lam).sum(dim=0)
    delta = torch.where(count >= 2, average, torch.where(count == 1, alone, torch.zeros_like(average)))
    return (base.float() + delta).to(base.dtype)


def stream(method: str, params: Mapping, shapes: Mapping[str, tuple[int, ...]], experts: Sequence[str], read: Read,
           base: str, blocks_of: Callable[[str], list]) -> Iterator[tuple[str, torch.Tensor]]:
    """The candidate's tensors in name order; `params`: checked, defaults filled (pool); `blocks_of(name)`: its row
    blocks ([None]: the whole tensor)."""
    p = params
    names = sorted(shapes)
    rho = overlap_ratios(names, experts, blocks_of, read, base, p["threshold"]) if p["r"] != 1 else [0.0] * len(experts)
    lambdas = scales(rho, p["r"])
    for name in names:
        blocks = blocks_of(name)
        merged = (merge_block(read(base, name, rows), [read(e, name, rows) for e in experts], lambdas, p["threshold"])
                  for rows in blocks)
        yield name, (next(merged) if blocks == [None] else assemble(shapes[name], zip(blocks, merged))).contiguous()
