"""Step 1: candidate backbones from weight-space operators, built in memory.

An operator is a mergekit method by name (`linear`, `task_arithmetic`, `ties`,
`dare_ties`, `model_stock`, `ram`, ...) or one of our own, named by a dotted
string `package.module:function` taking (state_dicts, base, parameters) and
returning a state dict. Parameters are checked against the method's own spec
before any weight is read.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

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


def build(recipe: Recipe, experts: Mapping[str, Mapping[str, torch.Tensor]],
          base: Mapping[str, torch.Tensor] | None) -> dict[str, torch.Tensor]:
    """Merge the experts' state dicts (and the base, when the method uses one) into a candidate."""
    torch.manual_seed(recipe.seed)  # same recipe, same weights, on any actor
    custom = _custom(recipe.method)
    with torch.no_grad():
        if custom:
            return custom(dict(experts), base, dict(recipe.parameters))
        from mergekit.merge_methods import merge_state_dicts

        models: dict[str, Mapping[str, torch.Tensor]] = dict(experts)
        base_id = None
        if uses_base(recipe.method):
            if base is None:
                raise ConfigError(f"operator {recipe.name}: {recipe.method} needs the base model")
            models = {BASE: base, **models}
            base_id = BASE
        dtype = next(iter(next(iter(models.values())).values())).dtype
        merged = merge_state_dicts(models, recipe.method, base=base_id, parameters=dict(recipe.parameters),
                                   out_dtype=dtype)
    return {k: v.contiguous() for k, v in merged.items()}
