"""Step 1: candidate backbones from weight-space operators, merged tensor by tensor.

An operator is a mergekit method by name (`linear`, `task_arithmetic`, `ties`,
`dare_ties`, `model_stock`, `ram`, ...) or one of our own, named by a dotted
string `package.module:function` taking (state_dicts, base, parameters) and
returning a state dict. Parameters are checked against the method's own spec
before any weight is read.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator, Mapping, Sequence

import torch

from arm_ray.errors import ConfigError
from arm_ray.registry import is_dotted, resolve

BASE = "__base__"


@dataclass(frozen=True)
class Recipe:
    name: str
    method: str
    parameters: dict[str, Any] = field(default_factory=dict)
    seed: int = 0  # DARE and other random operators draw from it


def _custom(method: str, where: str = "operator") -> Callable | None:
    """Our own operator named by a dotted string (see examples/custom_operator.py), or None for mergekit's."""
    return resolve(method, where) if is_dotted(method) else None


def _mergekit_method(method: str, where: str = "operator"):
    from mergekit import merge_methods

    try:
        return merge_methods.get(method)
    except RuntimeError:
        known = ", ".join(sorted(m.spec.name for m in merge_methods.registered_methods()))
        raise ConfigError(f"{where}: unknown operator {method!r}; mergekit methods: {known}; "
                          "or name your own as 'package.module:function'") from None


def _of_type(value: Any, kind: type) -> bool:
    """A parameter value of mergekit's declared type (a bool is not a number; an int is a float)."""
    if kind is bool:
        return isinstance(value, bool)
    if kind in (int, float):
        return isinstance(value, (int, float) if kind is float else int) and not isinstance(value, bool)
    return isinstance(value, kind) if isinstance(kind, type) else True


def uses_base(method: str) -> bool:
    if _custom(method):
        return True
    from mergekit.merge_methods.base import BasePolicy

    return _mergekit_method(method).spec.contract.base != BasePolicy.IGNORED


def validate(recipe: Recipe, n_experts: int, where: str) -> None:
    """Unknown method or parameter, a required parameter missing, too few inputs: a ConfigError naming `where`."""
    if _custom(recipe.method, f"{where}.method"):
        return
    from mergekit.merge_methods.base import BasePolicy

    m = _mergekit_method(recipe.method, f"{where}.method")
    spec = {p.name: p for p in m.spec.parameters}
    for k, v in recipe.parameters.items():
        if k not in spec:
            raise ConfigError(f"{where}.parameters.{k}: unknown parameter for {recipe.method}; "
                              f"expected one of {', '.join(spec) or '(none)'}")
        kind = spec[k].value_type
        if not all(_of_type(x, kind) for x in (v.values() if isinstance(v, dict) else [v])):
            raise ConfigError(f"{where}.parameters.{k}: {recipe.method} takes a {kind.__name__} "
                              f"(or one per expert), got {v!r}")
    for p in m.spec.parameters:
        required = type(p.default).__name__ == "object"  # mergekit's "no default" sentinel
        if required and p.name not in recipe.parameters:
            raise ConfigError(f"{where}.parameters.{p.name}: required by {recipe.method}")
    n_inputs = n_experts + (1 if m.spec.contract.base != BasePolicy.IGNORED else 0)
    if n_inputs < m.spec.contract.min_inputs:
        raise ConfigError(f"{where}: {recipe.method} needs at least {m.spec.contract.min_inputs} models "
                          f"(base included), the pool has {n_inputs}")


# mergekit methods whose output row i depends only on row i of each input (element-wise, scalar parameters): a
# large tensor is merged in blocks of rows, so the working memory of one merge stays small. TIES is merged in blocks
# too, after a first pass that finds each task vector's magnitude cut over the whole tensor (`ties_blocks`). Methods
# that compare whole tensors (Model Stock, RAM, breadcrumbs) get whole tensors.
ROW_SEPARABLE = frozenset({"linear", "task_arithmetic", "dare_linear", "dare_ties"})
BLOCK_BYTES = 4 << 20  # output bytes per block: a constant, so the blocks (and DARE's draws) never depend on memory

# (model, tensor name, rows or None) -> that tensor on the device where it is merged; model is an expert or BASE
Reader = Callable[[str, str, "tuple[int, int] | None"], torch.Tensor]


def inputs(recipe: Recipe, experts: Sequence[str]) -> list[str]:
    """The models a recipe reads, in mergekit's input order: the base first when the method uses it."""
    return ([BASE] if uses_base(recipe.method) else []) + list(experts)


def tensor_seed(seed: int, name: str, block: int) -> int:
    """Random operators (DARE) draw from a seed of their own per tensor and block: the same weights whatever
    order, actor or chunking builds them in."""
    return int.from_bytes(hashlib.sha256(f"{seed}:{name}:{block}".encode()).digest()[:8], "little") >> 1


def merge_tensor(recipe: Recipe, name: str, tensors: Mapping[str, torch.Tensor], block: int = 0) -> torch.Tensor:
    """One output tensor (or one block of its rows) from the same tensor of each input model."""
    from mergekit.merge_methods import merge_tensors

    ids = list(tensors)
    torch.manual_seed(tensor_seed(recipe.seed, name, block))
    first = tensors[ids[0]]
    return merge_tensors([tensors[i] for i in ids], recipe.method, parameters=dict(recipe.parameters), ids=ids,
                         base_index=ids.index(BASE) if BASE in ids else None, name=name, out_dtype=first.dtype)


class LazyStateDict(Mapping):
    """A model's tensors, read only when asked for (what our own operators see)."""

    def __init__(self, model: str, names: Sequence[str], read: Reader):
        self.model, self.names, self.read = model, sorted(names), read

    def __getitem__(self, name: str) -> torch.Tensor:
        if name not in self.names:
            raise KeyError(name)
        return self.read(self.model, name, None)

    def __iter__(self) -> Iterator[str]:
        return iter(self.names)

    def __len__(self) -> int:
        return len(self.names)


def stream(recipe: Recipe, shapes: Mapping[str, tuple[int, ...]], experts: Sequence[str], read: Reader,
           row_bytes: Callable[[str], int] | None = None) -> Iterator[tuple[str, torch.Tensor]]:
    """The candidate's tensors one at a time, in name order, each merged from what `read` returns.

    Memory: the tensors yielded so far (if the caller keeps them) plus one tensor of each input model, or one block
    of rows of each for the row-separable methods. `row_bytes(name)` is a row's size in the checkpoint; without it
    no tensor is cut into blocks.
    """
    torch.manual_seed(recipe.seed)
    custom = _custom(recipe.method)
    with torch.no_grad():
        if custom:
            lazy = {m: LazyStateDict(m, list(shapes), read) for m in [BASE, *experts]}
            merged = custom({e: lazy[e] for e in experts}, lazy[BASE], dict(recipe.parameters))
            yield from ((k, merged[k].contiguous()) for k in sorted(merged))
            return
        models = inputs(recipe, experts)
        for name in sorted(shapes):
            shape = shapes[name]
            rows = shape[0] if len(shape) >= 2 and row_bytes else 0
            step = max(1, BLOCK_BYTES // max(1, row_bytes(name))) if rows else 0
            if rows > step and recipe.method == "ties" and not recipe.parameters.get("rescale", False):
                # TIES stacks every expert's block: blocks shrink with the pool so its work space does not grow
                # (its result does not depend on the blocks)
                yield name, ties_blocks(recipe, name, shape, experts, read, max(1, step // len(experts)))
                continue
            if recipe.method not in ROW_SEPARABLE or rows <= step:
                yield name, merge_tensor(recipe, name, {m: read(m, name, None) for m in models}).contiguous()
                continue
            out = None
            for block, start in enumerate(range(0, rows, step)):
                part = merge_tensor(recipe, name, {m: read(m, name, (start, min(rows, start + step)))
                                                   for m in models}, block)
                if out is None:
                    out = torch.empty(shape, dtype=part.dtype, device=part.device)
                out[start:start + len(part)] = part
                del part
            yield name, out


# -- TIES in blocks of rows ----------------------------------------------------------------------------------
# TIES keeps, of each task vector delta_e = expert - base, the `density` share of entries with the largest |delta|
# over the whole tensor, then elects a sign per entry and averages the agreeing deltas (element-wise). Only the cut
# needs the whole tensor, and it is one number: a first pass finds it exactly from a histogram of |delta|'s bit
# patterns (non-negative floats order like their bits), then the merge runs block by block. Entries tied at the cut
# are kept lowest index first; mergekit keeps whichever of them its argsort puts first, so the two differ only there.

@dataclass
class Cut:
    """Keep entries whose |delta| bits exceed `key`, and the first `take` (in index order) equal to it."""
    key: int
    take: int
    seen: int = 0  # entries equal to `key` met so far (blocks come in row order)

    def keep(self, delta: torch.Tensor) -> torch.Tensor:
        key = _bits(delta).flatten()
        tied = key == self.key
        rank = torch.cumsum(tied, 0) + self.seen
        self.seen += int(tied.sum())
        return ((key > self.key) | (tied & (rank <= self.take))).view(delta.shape)


def _bits(delta: torch.Tensor) -> torch.Tensor:
    """|delta|'s bit patterns as int64 (sign bit clear), ordered like the magnitudes."""
    width = {2: torch.int16, 4: torch.int32, 8: torch.int64}[delta.element_size()]
    return delta.abs().view(width).to(torch.int64)


def _bucket(hist: torch.Tensor, k: int) -> tuple[int, int]:
    """The largest bucket b with at least k entries in buckets >= b, and the count in buckets above b."""
    at_least = torch.flip(torch.cumsum(torch.flip(hist, [0]), 0), [0])
    b = int((at_least >= k).nonzero().max())
    return b, int(at_least[b + 1]) if b + 1 < len(at_least) else 0


def magnitude_cut(deltas: Callable[[], Iterator[torch.Tensor]], k: int) -> Cut:
    """The cut keeping exactly the k largest |delta| over all blocks `deltas()` yields, bits compared 16 at a
    time (one pass for 16-bit floats, two for float32)."""
    wide = None
    high, above = 0, 0
    for d in deltas():
        if d.element_size() > 2:  # the high 16 bits first
            h = torch.bincount((_bits(d).flatten() >> 16).cpu(), minlength=1 << 16)
            wide = h if wide is None else wide + h
    if wide is not None:
        high, above = _bucket(wide, k)
    hist = torch.zeros(1 << 16, dtype=torch.int64)
    for d in deltas():
        key = _bits(d).flatten()
        hist += torch.bincount((key[(key >> 16) == high] & 0xFFFF).cpu(), minlength=1 << 16)
    low, above_low = _bucket(hist, k - above)
    return Cut((high << 16) | low, k - above - above_low)


def _per_expert(recipe: Recipe, key: str, expert: str, default: Any) -> Any:
    value = recipe.parameters.get(key, default)
    return value.get(expert, default) if isinstance(value, dict) else value


def ties_blocks(recipe: Recipe, name: str, shape: tuple[int, ...], experts: Sequence[str], read: Reader,
                step: int) -> torch.Tensor:
    """TIES (mergekit's `ties`, rescale off) of tensor `name`, holding one block of rows of each input at a time."""
    from mergekit.merge_methods.generalized_task_arithmetic import get_mask

    blocks = [(start, min(shape[0], start + step)) for start in range(0, shape[0], step)]
    numel = int(torch.Size(shape).numel())
    density = {e: _per_expert(recipe, "density", e, 1.0) for e in experts}
    cuts = {e: magnitude_cut(lambda e=e: (read(e, name, r) - read(BASE, name, r) for r in blocks),
                             max(1, int(density[e] * numel)))
            for e in experts if 0 < density[e] < 1}  # density >= 1 keeps every entry, <= 0 none
    weights_list = [_per_expert(recipe, "weight", e, None) for e in experts]
    normalize = recipe.parameters.get("normalize", True)
    lam = recipe.parameters.get("lambda", 1.0)
    out = None
    for r in blocks:
        base = read(BASE, name, r)
        deltas = base.new_empty((len(experts), *base.shape))
        for i, e in enumerate(experts):
            delta = read(e, name, r) - base
            if e in cuts:
                delta = delta * cuts[e].keep(delta).to(delta.dtype)
            elif density[e] <= 0:
                delta = torch.zeros_like(delta)
            deltas[i] = delta
        weights = torch.tensor(weights_list, dtype=deltas.dtype, device=deltas.device)
        weights = weights.view(-1, *[1] * (deltas.dim() - 1))
        deltas.mul_(weights)  # as mergekit's generalized task arithmetic does, from here on element-wise
        mask = get_mask(deltas, method="sum",
                        mask_dtype=torch.int8 if recipe.parameters.get("int8_mask", False) else base.dtype)
        mixed = (deltas * mask).sum(dim=0)
        divisor = (weights * mask).sum(dim=0)
        divisor[divisor == 0] = 1
        if normalize:
            mixed /= divisor
        if lam != 1:
            mixed *= lam
        part = (base + mixed).to(base.dtype)
        if out is None:
            out = torch.empty(shape, dtype=part.dtype, device=part.device)
        out[r[0]:r[1]] = part
        del deltas, mask, mixed, part
    return out


def build(recipe: Recipe, experts: Mapping[str, Mapping[str, torch.Tensor]],
          base: Mapping[str, torch.Tensor] | None) -> dict[str, torch.Tensor]:
    """The candidate from state dicts held in memory (tests, small pools); the tracer streams it from disk."""
    if uses_base(recipe.method) and not _custom(recipe.method) and base is None:
        raise ConfigError(f"operator {recipe.name}: {recipe.method} needs the base model")
    models = {BASE: base, **experts} if base is not None else dict(experts)
    first = next(iter(models.values()))

    def read(model: str, name: str, rows: tuple[int, int] | None) -> torch.Tensor:
        t = models[model][name]
        return t if rows is None else t[rows[0]:rows[1]]

    row_bytes = lambda n: first[n][0].numel() * first[n].element_size()  # noqa: E731
    return dict(stream(recipe, {k: tuple(v.shape) for k, v in first.items()}, list(experts), read, row_bytes))
