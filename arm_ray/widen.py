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
float32, returned in the checkpoint's dtype. Each tensor is merged whole: one tensor of each input at a time.
"""

from __future__ import annotations

from typing import Callable, Iterator, Mapping, Sequence

import torch

DEFAULTS = {"widen": {"above_average_value_ratio": 1.0, "score_calibration_value": 1.0}}
METHODS = frozenset(DEFAULTS)
EMBEDDING = "embed_tokens.weight"  # transposed as the authors do (their code names model.embed_tokens.weight)


def rank(x: torch.Tensor) -> torch.Tensor:
    """[n, in] -> each entry's ascending position within its row, over `in` (0, 1/in, ..., (in-1)/in)."""
    order = torch.argsort(x, dim=1, descending=False, stable=True)
    steps = (torch.arange(x.shape[1], dtype=torch.float32) / x.shape[1]).expand(x.shape[0], -1).contiguous()
    return torch.zeros(x.shape, dtype=torch.float32).scatter(1, order, steps)


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
    for name in sorted(shapes):
        b, es = read(base, name, None), [read(e, name, None) for e in experts]
        if b.dim() == 1:
            yield name, merge_vector(b, es, ratio, calibration).contiguous()
        elif b.dim() == 2:
            if name.endswith(EMBEDDING):
                yield name, merge_matrix(b.T, [e.T for e in es], ratio, calibration).T.contiguous()
            else:
                yield name, merge_matrix(b, es, ratio, calibration).contiguous()
        else:
            raise ValueError(f"widen: {name} has {b.dim()} dimensions; WIDEN merges vectors and matrices")
