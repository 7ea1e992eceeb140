"""AIM, activation-informed merging (arXiv 2502.02421), as its authors' `relax_on_merged` computes it
(github:ahnobari/ActivationInformedMerging, `MergeModels/ActivationMerging/_utils.py`).

On top of any merge, with the base model's activations on calibration text:

    s_j   = mean over calibration tokens of |x_j|, x the input of the module (per input channel j)
    a     = s / max_j s_j                                     in [0, 1], per module
    W     = W_base + (W_merged - W_base) * (1 - a * (1 - omega))     a broadcast over W's last (input) dimension

for the weight of every module that has one, except the token embedding: each Linear (q, k, v, o, gate, up, down,
the output head) and each norm (whose input is the residual stream). Channels the base relies on keep only `omega`
of the merge's change; channels it does not use take all of it. Biases keep the merge's value, as theirs do.

Two choices where the authors' code is silent or specific to its setting:
- the calibration text is the run's calibration trajectories, every token (theirs: 256 Pile samples of 512
  tokens); s is the mean over all tokens (theirs sums equal-sized blocks' means: the same after the max-norm);
- with tied embeddings the head and the embedding are one matrix; their loop sets the head last, so the shared
  matrix is relaxed with the head's input importance. We do the same (named by the embedding's tensor).
"""

from __future__ import annotations

from typing import Callable, Iterable, Iterator, Mapping

import torch

from arm_ray.rows import assemble, spans


def importance(model: torch.nn.Module, packs: Iterable, progress: Callable[[int], None] | None = None
               ) -> dict[str, torch.Tensor]:
    """a per weight tensor (by its checkpoint name): the base's normalised mean |input| per input channel.

    `packs` are saliency packs (input_ids and position_ids of packed trajectories, no padding); the decoder runs
    without its head (no logits), and the head's input is the decoder's output (after the final norm).
    """
    decoder = getattr(model, model.base_model_prefix)
    first = next(decoder.parameters()).device
    name_of = {id(p): n for n, p in model.named_parameters()}  # a tied head's weight is named by the embedding
    sums: dict[str, torch.Tensor] = {}
    count = [0]

    def add(key: str, x: torch.Tensor) -> None:
        s = x.reshape(-1, x.shape[-1]).float().abs().sum(dim=0)
        sums[key] = s if key not in sums else sums[key] + s.to(sums[key].device)

    handles = []
    for mod_name, m in model.named_modules():
        w = getattr(m, "weight", None)
        if not isinstance(w, torch.nn.Parameter) or "embed" in mod_name:
            continue
        key = name_of[id(w)]
        if m is model.get_output_embeddings():
            handles.append(decoder.register_forward_hook(lambda _m, _a, out, key=key: add(key, out[0])))
        else:
            handles.append(m.register_forward_pre_hook(lambda _m, args, key=key: add(key, args[0])))
    try:
        with torch.no_grad():
            for pack in packs:
                decoder(input_ids=pack.input_ids.to(first), position_ids=pack.position_ids.to(first), use_cache=False)
                count[0] += pack.input_ids.numel()
                if progress:
                    progress(pack.input_ids.numel())
    finally:
        for h in handles:
            h.remove()
    if not count[0]:
        raise ValueError("aim: no calibration tokens to measure the base's activations on")
    out = {}
    for key, s in sums.items():
        mean = s.cpu() / count[0]
        top = mean.max()
        out[key] = mean / top if top > 0 else torch.zeros_like(mean)
    return out


def relax(merged: torch.Tensor, base: torch.Tensor, a: torch.Tensor, omega: float) -> torch.Tensor:
    """W_base + (W_merged - W_base) * (1 - a (1 - omega)), in float32, returned in the merge's dtype."""
    if a.shape[0] != merged.shape[-1]:
        raise ValueError(f"aim: importance of {a.shape[0]} channels for a weight of shape {tuple(merged.shape)}")
    b = base.float()
    factor = 1.0 - a.to(device=merged.device, dtype=torch.float32) * (1.0 - omega)
    return (b + (merged.float() - b) * factor).to(merged.dtype)


BLOCK_BYTES = 4 << 20  # float32 bytes of one block of rows relaxed at a time


def relax_stream(merged: Iterator[tuple[str, torch.Tensor]],
                 read_base: Callable[[str, "tuple[int, int] | None"], torch.Tensor],
                 a: Mapping[str, torch.Tensor], omega: float) -> Iterator[tuple[str, torch.Tensor]]:
    """A merge's tensors with AIM applied to those `a` names, a block of rows at a time: memory is the merged
    tensor, its relaxed copy and one block of the base (with its float32 working copies). (Not in place: a merge
    may hand back one of its inputs.)"""
    for name, t in merged:
        if name in a:
            if t.dim() < 2:
                t = relax(t, read_base(name, None), a[name], omega)
            else:
                step = max(1, BLOCK_BYTES // (4 * t[0].numel()))
                t = assemble(tuple(t.shape), ((r, relax(t[r[0]:r[1]], read_base(name, r), a[name], omega))
                                              for r in spans(tuple(t.shape), step)))
        yield name, t
