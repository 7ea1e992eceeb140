"""WIDEN (arXiv 2408.03092), as its authors' `widen_merging` (github:yule-BUAA/MergeLLM) computes it.

For a matrix W [out, in] (a token embedding [vocab, d] is transposed first, so its columns are tokens):

    m = ||W||_2 over each column [in],  D = W / m                           magnitude and direction
    dm_i = |m_i - m_base|,  dd_i = 1 - cos(D_i[:, j], D_base[:, j])         expert i's change per column
    rank(x_i) = (position of each entry in x_i sorted ascending, stable) / in
    score(s)  = softmax over experts of s, set to `score_calibration_value` (1) where s_i exceeds
                `above_average_value_ratio` (1) times the mean of s_i over the columns
    w_i = (score(rank(dm))_i + score(rank(dd))_i) / 2                        [in], one weight per column
    W   = W_base + sum_i delta_i * w_i                                       (broadcast over rows)

A vector (a norm's weight, a bias) gets per-entry weights score(|delta|) of the raw changes (no ranks). Merged in
float32, returned in the checkpoint's dtype.

A matrix is merged in two passes over blocks of rows, so memory stays one block of each input: the first sums (in
float64), per column, ||W_i||^2, ||W_base||^2 and W_i . W_base (cos(D_i, D_base) = W_i . W_base / (m_i m_base)); the
weights follow from those [n, in] numbers; the second pass adds the weighted deltas block by block. (A zero column has
no direction: its cosine is taken as 0, where the authors' division by m would give NaN.) `merge_matrix` is the same
computation on whole tensors, as the authors write it.
"""

from __future__ import annotations

from typing import Callable, Iterator, Mapping, Sequence

import torch

from arm_ray.rows import assemble

DEFAULTS = {"widen": {"above_average_value_ratio": 1.0, "score_calibration_value": 1.0}}
METHODS = frozenset(DEFAULTS)
EMBEDDING = "embed_tokens.weight"  # transposed as the authors do (their code names model.embed_tokens.weight)


def rank(x: torch.Tensor) -> torch.Tensor:
    """[n, in] -> each entry's ascending position within its row, over `in` (0, 1/in, ..., (in-1)/in)."""
    order = torch.argsort(x, dim=1, descending=False, stable=True)
    steps = torch.arange(x.shape[1], dtype=torch.float32, device=x.device) / x.shape[1]
    return torch.zeros(x.shape, dtype=torch.float32, device=x.device).scatter(1, order, steps.expand(x.shape[0], -1))


def scores(s: torch.Tensor, ratio: float, calibration: float) -> torch.Tensor:
    out = torch.softmax(s, dim=0)
    out[s > s.mean(dim=1, keepdim=True) * ratio] = calibration
    return out


def merge_matrix(base: torch.Tensor, experts: Sequence[torch.Tensor], ratio: float, calibration: float
                 ) -> torch.Tensor:
    b = base.float()
    ws = [e.float() for e in experts]
    m_base = torch.norm(b, p=2, dim=0)
    d_base = b / m_base
    dm, dd = [], []
    for w in ws:
        m = torch.norm(w, p=2, dim=0)
        dm.append((m - m_base).abs())
        dd.append(1.0 - torch.cosine_similarity(w / m, d_base, dim=0))
    weight = 0.5 * (scores(rank(torch.stack(dm)), ratio, calibration)
                    + scores(rank(torch.stack(dd)), ratio, calibration))  # [n, in]
    delta = sum((w - b) * weight[i].unsqueeze(0) for i, w in enumerate(ws))
    return (b + delta).to(base.dtype)


def column_weights(m_base: torch.Tensor, m: torch.Tensor, dots: torch.Tensor, ratio: float, calibration: float
                   ) -> torch.Tensor:
    """[n, in] weights from each column's norms (base [in], experts [n, in]) and dot products with the base."""
    dm = (m - m_base).abs()
    dd = 1.0 - dots / (m * m_base).clamp(min=1e-8)
    return 0.5 * (scores(rank(dm), ratio, calibration) + scores(rank(dd), ratio, calibration))


def merge_blocks(name: str, shape: tuple[int, ...], experts: Sequence[str], read: Callable, base: str, blocks: list,
                 ratio: float, calibration: float, transposed: bool) -> torch.Tensor:
    """A matrix by the two passes above; `transposed`: the columns are the checkpoint's rows (a token embedding)."""
    sb, se, dots = [], [[] for _ in experts], [[] for _ in experts]  # per block: [in] sums, or [rows] when transposed
    for rows in blocks:  # in float64: 1 - cos of columns that barely turned is a small difference of large sums
        b = read(base, name, rows).double()
        dim = 1 if transposed else 0
        sb.append(b.square().sum(dim))
        for i, e in enumerate(experts):
            w = read(e, name, rows).double()
            se[i].append(w.square().sum(dim))
            dots[i].append((w * b).sum(dim))
        del b

    def total(parts: list) -> torch.Tensor:  # a column's sum over blocks, or the rows' values side by side
        return torch.cat(parts) if transposed else torch.stack(parts).sum(0)

    m_base = total(sb).sqrt()
    m = torch.stack([total(x) for x in se]).sqrt()
    weight = column_weights(m_base, m, torch.stack([total(x) for x in dots]), ratio, calibration).float()

    def block(rows) -> torch.Tensor:
        b0 = read(base, name, rows)
        b = b0.float()
        lo, hi = rows or (0, shape[0])
        part = b.clone()
        for i, e in enumerate(experts):
            w_i = weight[i, lo:hi].unsqueeze(1) if transposed else weight[i].unsqueeze(0)
            part += (read(e, name, rows).float() - b) * w_i.to(b.device)
        return part.to(b0.dtype)

    if blocks == [None]:
        return block(None)
    return assemble(shape, ((r, block(r)) for r in blocks))


def merge_vector(base: torch.Tensor, experts: Sequence[torch.Tensor], ratio: float, calibration: float
                 ) -> torch.Tensor:
    b = base.float()
    deltas = torch.stack([e.float() - b for e in experts])
    weight = scores(deltas.abs(), ratio, calibration)
    return (b + (deltas * weight).sum(dim=0)).to(base.dtype)


def stream(method: str, params: Mapping, shapes: Mapping[str, tuple[int, ...]], experts: Sequence[str],
           read: Callable, base: str, blocks_of: Callable | None = None) -> Iterator[tuple[str, torch.Tensor]]:
    p = params  # checked, defaults filled (pool)
    ratio, calibration = p["above_average_value_ratio"], p["score_calibration_value"]
    blocks_of = blocks_of or (lambda name: [None])
    for name in sorted(shapes):
        shape = tuple(shapes[name])
        if len(shape) == 1:
            yield name, merge_vector(read(base, name, None), [read(e, name, None) for e in experts], ratio,
                                     calibration).contiguous()
        elif len(shape) == 2:
            yield name, merge_blocks(name, shape, experts, read, base, blocks_of(name), ratio, calibration,
                                     name.endswith(EMBEDDING)).contiguous()
        else:
            raise ValueError(f"widen: {name} has {len(shape)} dimensions; WIDEN merges vectors and matrices")
