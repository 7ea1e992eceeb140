"""Role-conditioned saliency (ARM Eq. 2): hooks, accumulation and the Parquet store.

  s_{l,j}(M; b, r) = mean over trajectories x with T_{b,r}(x) non-empty of
                     [ mean over t in T_{b,r}(x) of |z_{l,j}(t)| ]

Each traced position t of trajectory x carries the weight 1/|T(x)|, so one
weighted sum per (layer, group) gives the sum of per-trajectory means; divided
by the number of trajectories it is s. Sums stay on the device in float32 and
grow by a matrix product (deterministic on every device; no atomics); the hook
selects the role positions with `index_select` on indices built once per batch
(no boolean masks, no host sync per layer, no activation copies).
Sequences are packed into one row with position ids that restart at 0, so
transformers builds a block-diagonal mask and no compute goes to padding.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Sequence

import numpy as np
import torch

from arm_ray.architectures import MlpNames
from arm_ray.roles.spans import Encoded

Group = tuple[str, str]  # (benchmark, role)


@dataclass
class Pack:
    input_ids: torch.Tensor  # [1, T]
    position_ids: torch.Tensor  # [1, T]
    index: torch.Tensor  # [n] flat positions to read
    group: torch.Tensor  # [n] group of each position
    weight: torch.Tensor  # [n] float32, 1/|T(x)| of its trajectory and group

    def to(self, device) -> "Pack":
        return Pack(*(t.to(device, non_blocking=True) for t in
                      (self.input_ids, self.position_ids, self.index, self.group, self.weight)))

    @property
    def n_tokens(self) -> int:
        return self.input_ids.shape[1]


@dataclass
class Packed:
    groups: list[Group]
    packs: list[Pack]
    n_trajectories: list[int]  # per group: trajectories with at least one role token
    n_tokens: list[int]  # per group: traced positions


def pack_trajectories(encoded: Sequence[Encoded], groups: Sequence[Group], max_tokens: int) -> Packed:
    """Greedy packing in input order (deterministic); a trajectory is never split."""
    gid = {g: i for i, g in enumerate(groups)}
    n_traj, n_tok = [0] * len(groups), [0] * len(groups)
    packs: list[Pack] = []
    ids, pos, idx, grp, wts = [], [], [], [], []
    length = 0

    def flush():
        nonlocal ids, pos, idx, grp, wts, length
        if ids and idx:
            packs.append(Pack(torch.from_numpy(np.concatenate(ids))[None], torch.from_numpy(np.concatenate(pos))[None],
                              torch.from_numpy(np.concatenate(idx)), torch.from_numpy(np.concatenate(grp)),
                              torch.from_numpy(np.concatenate(wts))))
        ids, pos, idx, grp, wts, length = [], [], [], [], [], 0

    for enc in encoded:
        traced = [(gid[(enc.benchmark, role)], p) for role, p in enc.positions.items()
                  if (enc.benchmark, role) in gid and len(p)]
        if not traced:
            continue  # no role token: skipped for (b, r), as the spec says
        n = len(enc.input_ids)
        if length and length + n > max_tokens:
            flush()
        for g, p in traced:
            n_traj[g] += 1
            n_tok[g] += len(p)
            idx.append(p + length)
            grp.append(np.full(len(p), g, dtype=np.int64))
            wts.append(np.full(len(p), 1.0 / len(p), dtype=np.float32))
        ids.append(enc.input_ids)
        pos.append(np.arange(n, dtype=np.int64))
        length += n
    flush()
    return Packed(list(groups), packs, n_traj, n_tok)


def group_matrix(pack: Pack, n_groups: int) -> torch.Tensor:
    """W [G, n]: W[g, i] = weight of traced position i if it belongs to group g, else 0.

    The hook adds W @ |z| to the sums: a matrix product, whose result does not depend on scheduling (an
    `index_add_` on CUDA adds with atomics in any order, so the sums, and the top-k boundary, could change
    from run to run).
    """
    w = torch.zeros(n_groups, len(pack.index), dtype=torch.float32)
    w[pack.group, torch.arange(len(pack.index))] = pack.weight
    return w


class SaliencyTracer:
    """Accumulates sum_x (1/|T(x)|) sum_t |z_l(t)| per layer and group, each layer's sums on that layer's device."""

    def __init__(self, model: torch.nn.Module, names: MlpNames, n_layers: int, d_ff: int, n_groups: int):
        self.model = model
        self.n_groups, self.d_ff = n_groups, d_ff
        self._modules = [model.get_submodule(names.down.format(l=layer)) for layer in range(n_layers)]
        self.sums: list[torch.Tensor | None] = [None] * n_layers  # made on the layer's device at its first call
        self._host: tuple[torch.Tensor, torch.Tensor] | None = None  # this pack's (index, W) on the host
        self._batch: dict[torch.device, tuple[torch.Tensor, torch.Tensor]] = {}  # ... copied once per device

    def _on(self, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        if device not in self._batch:
            self._batch[device] = tuple(t.to(device, non_blocking=True) for t in self._host)
        return self._batch[device]

    def _hook(self, layer: int) -> Callable:
        def hook(_module, args):
            z = args[0]
            index, w = self._on(z.device)
            rows = z.reshape(-1, z.shape[-1]).index_select(0, index).float().abs_()
            if self.sums[layer] is None:
                self.sums[layer] = torch.zeros(self.n_groups, self.d_ff, dtype=torch.float32, device=z.device)
            self.sums[layer].addmm_(w, rows)
        return hook

    @torch.no_grad()
    def run(self, packs: Iterable[Pack], progress: Callable[[int], None] | None = None) -> np.ndarray:
        decoder = getattr(self.model, self.model.base_model_prefix)  # no lm_head, no logits
        first = next(decoder.parameters()).device
        handles = [m.register_forward_pre_hook(self._hook(layer)) for layer, m in enumerate(self._modules)]
        tf32 = torch.backends.cuda.matmul.allow_tf32
        torch.backends.cuda.matmul.allow_tf32 = False  # the sums stay true float32
        try:
            for pack in packs:
                self._host, self._batch = (pack.index, group_matrix(pack, self.n_groups)), {}
                decoder(input_ids=pack.input_ids.to(first), position_ids=pack.position_ids.to(first),
                        use_cache=False)
                if progress:
                    progress(pack.n_tokens)
        finally:
            torch.backends.cuda.matmul.allow_tf32 = tf32
            for h in handles:
                h.remove()
            self._host, self._batch = None, {}
        self.sums = [torch.zeros(self.n_groups, self.d_ff) if s is None else s for s in self.sums]
        return torch.stack([s.cpu() for s in self.sums]).numpy()  # the only host sync


@dataclass
class TraceResult:
    model: str
    kind: str  # "expert" | "candidate"
    groups: list[Group]
    sums: np.ndarray  # float32 [L, G, d_ff]
    n_trajectories: list[int]
    n_tokens: list[int]

    def saliency(self, benchmark: str, role: str) -> np.ndarray:
        g = self.groups.index((benchmark, role))
        if self.n_trajectories[g] == 0:
            raise ValueError(f"{self.model}: no trajectory of {benchmark} has a {role} token")
        return (self.sums[:, g, :] / np.float32(self.n_trajectories[g])).astype(np.float32)


SALIENCY_COLUMNS = ("model", "kind", "benchmark", "role", "layer", "values", "n_trajectories", "n_tokens")


def saliency_table(results: Sequence[TraceResult]):
    """One row per (model, benchmark, role, layer): the run's `saliency.parquet`."""
    import pyarrow as pa

    cols: dict[str, list] = {c: [] for c in SALIENCY_COLUMNS}
    for r in results:
        for g, (bench, role) in enumerate(r.groups):
            if r.n_trajectories[g] == 0:
                continue
            s = r.saliency(bench, role)
            for layer in range(s.shape[0]):
                for c, v in zip(SALIENCY_COLUMNS, (r.model, r.kind, bench, role, layer, s[layer],
                                                   r.n_trajectories[g], r.n_tokens[g])):
                    cols[c].append(v)
    schema = pa.schema([("model", pa.string()), ("kind", pa.string()), ("benchmark", pa.string()),
                        ("role", pa.string()), ("layer", pa.int32()), ("values", pa.list_(pa.float32())),
                        ("n_trajectories", pa.int64()), ("n_tokens", pa.int64())])
    cols["values"] = [v.tolist() for v in cols["values"]]
    return pa.table(cols, schema=schema)


def read_saliency(path: str | Path) -> dict[tuple[str, str, str], np.ndarray]:
    """(model, benchmark, role) -> s [L, d_ff] from a run's `saliency.parquet`."""
    import pyarrow.parquet as pq

    t = pq.read_table(path).to_pydict()
    rows: dict[tuple[str, str, str], dict[int, list]] = {}
    for m, b, r, layer, v in zip(t["model"], t["benchmark"], t["role"], t["layer"], t["values"]):
        rows.setdefault((m, b, r), {})[layer] = v
    return {key: np.asarray([layers[i] for i in sorted(layers)], dtype=np.float32) for key, layers in rows.items()}
