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
# large tensor is merged in blocks of rows, so the working memory of one merge stays small. Methods that look at a
# whole tensor (TIES and breadcrumbs trim by magnitude over the tensor, Model Stock and RAM compare whole tensors)
# get whole tensors.
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
