"""Step 1: candidate backbones from weight-space operators, merged tensor by tensor.

An operator is a mergekit method by name (`linear`, `task_arithmetic`, `ties`,
`dare_ties`, `model_stock`, `ram`, ...), one of ours registered by name
(`ram_official`, `ramplus_official`: the RAM authors' rule, `arm_ray.ram`;
`widen`: WIDEN as its authors' code, `arm_ray.widen`), or
a dotted string `package.module:function` taking (state_dicts, base,
parameters) and returning a state dict. Parameters are checked against the method's own spec
before any weight is read.
"""

from __future__ import annotations

import hashlib
import importlib
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator, Mapping, Sequence

import torch

from arm_ray import checkpoints
from arm_ray.errors import ConfigError
from arm_ray.registry import is_dotted, resolve
from arm_ray.rows import assemble, spans

BASE = "__base__"


@dataclass(frozen=True)
class Recipe:
    name: str
    method: str
    parameters: dict[str, Any] = field(default_factory=dict)
    seed: int = 0  # DARE and other random operators draw from it
    aim: float | None = None  # AIM's omega on this merge's result (arm_ray.aim), or None
    importance: str | None = None  # AIM: the base's input importance (a safetensors file the run measured)


# our own methods, registered by name: a module with DEFAULTS, parameters(method, given, where) and stream(...),
# imported when a recipe uses it
OWN = {"ram_official": "arm_ray.ram", "ramplus_official": "arm_ray.ram", "widen": "arm_ray.widen"}


def _own(method: str):
    return importlib.import_module(OWN[method]) if method in OWN else None


def own_parameters(recipe: Recipe, where: str) -> dict[str, float]:
    """An own method's parameters, defaults filled in; a ConfigError naming `where` for a wrong one."""
    own = _own(recipe.method)
    out = dict(own.DEFAULTS[recipe.method])
    for k, v in recipe.parameters.items():
        if k not in out:
            raise ConfigError(f"{where}.parameters.{k}: unknown parameter for {recipe.method}; expected one of "
                              f"{', '.join(out)}")
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            raise ConfigError(f"{where}.parameters.{k}: {recipe.method} takes a number, got {v!r}")
        out[k] = float(v)
    if hasattr(own, "check"):
        own.check(out, where)
    return out


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
    if _custom(method) or method in OWN:
        return True
    from mergekit.merge_methods.base import BasePolicy

    return _mergekit_method(method).spec.contract.base != BasePolicy.IGNORED


def validate(recipe: Recipe, n_experts: int, where: str) -> None:
    """Unknown method or parameter, a required parameter missing, too few inputs: a ConfigError naming `where`."""
    if _custom(recipe.method, f"{where}.method"):
        return
    if recipe.method in OWN:
        own_parameters(recipe, where)
        if n_experts < 2:
            raise ConfigError(f"{where}: {recipe.method} merges at least 2 experts, the pool has {n_experts}")
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
# large tensor is merged in blocks of rows, so the working memory of one merge stays small. TIES and Model Stock are
# merged in blocks too, after a first pass over the whole tensor for the one thing they need from all of it (each task
# vector's magnitude cut; the task vectors' dot products). Other methods (breadcrumbs, RAM+, ...) get whole tensors.
ROW_SEPARABLE = frozenset({"linear", "task_arithmetic", "dare_linear", "dare_ties", "ram"})
# input bytes per block, over all input models: constants, so the blocks (and DARE's draws) depend on the pool, the
# shapes and the kind of device (CPU or GPU), never on the machine's memory
BLOCK_BYTES = 4 << 20
# On a GPU a 4 MiB block is all launch and read overhead (an 8B TIES candidate: 3x slower than 256 MiB blocks,
# scripts/gpu_check.py); there the blocks only have to leave room beside the model.
GPU_BLOCK_BYTES = 256 << 20


def block_bytes(device: torch.device) -> int:
    """The bytes one block of rows of all inputs may take on `device`. Random operators (DARE) draw per block, so
    their bits depend on it as they do on the device's generator."""
    return GPU_BLOCK_BYTES if device.type == "cuda" else BLOCK_BYTES


ALIGN = 32  # rows: see rows_per_block

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
           row_bytes: Callable[[str], int] | None = None,
           block_bytes: Callable[[str], int] = lambda name: BLOCK_BYTES) -> Iterator[tuple[str, torch.Tensor]]:
    """The candidate's tensors one at a time, in name order, each merged from what `read` returns.

    Memory: the tensors yielded so far (if the caller keeps them) plus one block of rows of each input model for
    the methods `by_blocks` knows, one tensor of each for the others. `row_bytes(name)` is a row's size in the
    checkpoint; without it no tensor is cut into blocks. `block_bytes(name)` bounds one block of all inputs together.
    """
    if recipe.aim is not None:  # AIM on the merge's result, tensor by tensor
        from dataclasses import replace

        from arm_ray import aim

        if recipe.importance is None:
            raise ValueError(f"operator {recipe.name}: AIM needs the base's input importance; none was measured")
        merged = stream(replace(recipe, aim=None, importance=None), shapes, experts, read, row_bytes, block_bytes)
        a = checkpoints.read_tensor_file(recipe.importance)
        yield from aim.relax_stream(merged, lambda name, rows: read(BASE, name, rows), a, recipe.aim)
        return
    torch.manual_seed(recipe.seed)
    custom = _custom(recipe.method)
    with torch.no_grad():
        if custom:
            lazy = {m: LazyStateDict(m, list(shapes), read) for m in [BASE, *experts]}
            merged = custom({e: lazy[e] for e in experts}, lazy[BASE], dict(recipe.parameters))
            yield from ((k, merged[k].contiguous()) for k in sorted(merged))
            return
        models = inputs(recipe, experts)
        own = _own(recipe.method)
        if own:  # RAM's: element-wise in blocks of rows (after a whole-model count); WIDEN's: two passes of blocks
            def blocks_of(name: str) -> list:
                shape = shapes[name]
                if len(shape) < 2 or not row_bytes:
                    return [None]
                step = rows_per_block(block_bytes(name) // (row_bytes(name) * len(models)))
                return spans(shape, step) if shape[0] > step else [None]

            params = own_parameters(recipe, f"operator {recipe.name}")
            yield from own.stream(recipe.method, params, shapes, experts, read, BASE, blocks_of)
            return
        blocked = by_blocks(recipe)
        for name in sorted(shapes):
            shape = shapes[name]
            rows = shape[0] if len(shape) >= 2 and row_bytes and blocked else 0
            # each merge holds (and stacks) a block of every input: blocks shrink as the pool grows
            step = rows_per_block(block_bytes(name) // (row_bytes(name) * len(models))) if rows else 0
            if rows > step:
                yield name, blocked(recipe, name, shape, experts, read, step)
            else:
                yield name, merge_tensor(recipe, name, {m: read(m, name, None) for m in models}).contiguous()


def rows_per_block(budget: int) -> int:
    """At least `budget` rows (and 1), rounded up to whole chunks of ALIGN rows. CPU kernels reduce over stacked
    inputs 32 entries at a time and a ragged tail another way (filter-wise Model Stock stacks per-row values): blocks
    of whole chunks give the bits of the whole tensor."""
    return -(-max(1, budget) // ALIGN) * ALIGN


BlockMerge = Callable[[Recipe, str, "tuple[int, ...]", Sequence[str], Reader, int], torch.Tensor]


def by_blocks(recipe: Recipe) -> BlockMerge | None:
    """How a recipe merges a large tensor in blocks of rows, or None when it needs the whole tensor."""
    p = recipe.parameters
    if recipe.method in ROW_SEPARABLE or (recipe.method == "model_stock" and p.get("filter_wise", False)):
        return row_blocks  # filter-wise Model Stock compares row with row
    if recipe.method == "ties" and not p.get("rescale", False):  # rescale divides by an l1 norm of the whole tensor
        return ties_blocks
    if recipe.method == "model_stock":
        return model_stock_blocks
    return None


def row_blocks(recipe: Recipe, name: str, shape: tuple[int, ...], experts: Sequence[str], read: Reader,
               step: int) -> torch.Tensor:
    """A row-separable method, block by block with mergekit itself (the same bits as the whole tensor; DARE draws
    per block)."""
    models = inputs(recipe, experts)
    return assemble(shape, ((r, merge_tensor(recipe, name, {m: read(m, name, r) for m in models}, block))
                             for block, r in enumerate(spans(shape, step))))


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
            h = torch.bincount(_bits(d).flatten() >> 16, minlength=1 << 16).cpu()  # counted where d lives
            wide = h if wide is None else wide + h
    if wide is not None:
        high, above = _bucket(wide, k)
    hist = torch.zeros(1 << 16, dtype=torch.int64)
    for d in deltas():
        key = _bits(d).flatten()
        hist += torch.bincount(key[(key >> 16) == high] & 0xFFFF, minlength=1 << 16).cpu()
    low, above_low = _bucket(hist, k - above)
    return Cut((high << 16) | low, k - above - above_low)


def _per_expert(recipe: Recipe, key: str, expert: str, default: Any) -> Any:
    value = recipe.parameters.get(key, default)
    return value.get(expert, default) if isinstance(value, dict) else value


def ties_blocks(recipe: Recipe, name: str, shape: tuple[int, ...], experts: Sequence[str], read: Reader,
                step: int) -> torch.Tensor:
    """TIES (mergekit's `ties`, rescale off) of tensor `name`, holding one block of rows of each input at a time
    (and on a GPU with room, the task vectors between the two passes)."""
    from mergekit.merge_methods.generalized_task_arithmetic import get_mask

    blocks = spans(shape, step)
    numel = int(torch.Size(shape).numel())
    density = {e: _per_expert(recipe, "density", e, 1.0) for e in experts}
    cut_experts = [e for e in experts if 0 < density[e] < 1]  # density >= 1 keeps every entry, <= 0 none
    first = read(BASE, name, blocks[0])
    # the cut pass reads every task vector once more; where they fit beside the model (on a GPU) they are kept
    # from that pass for the merge instead of being read again
    held: dict[tuple[str, int], torch.Tensor] | None = (
        {} if numel * first.element_size() * len(cut_experts) <= hold_bytes(first.device) else None)

    def delta(e: str, i: int) -> torch.Tensor:
        if held is not None and (e, i) in held:
            return held[e, i]
        d = read(e, name, blocks[i]) - (first if i == 0 else read(BASE, name, blocks[i]))
        if held is not None and e in cut_experts:
            held[e, i] = d
        return d

    cuts = {e: magnitude_cut(lambda e=e: (delta(e, i) for i in range(len(blocks))), max(1, int(density[e] * numel)))
            for e in cut_experts}
    weights_list = [_per_expert(recipe, "weight", e, None) for e in experts]
    normalize = recipe.parameters.get("normalize", True)
    lam = recipe.parameters.get("lambda", 1.0)
    mask_dtype = torch.int8 if recipe.parameters.get("int8_mask", False) else None

    def block(i: int) -> torch.Tensor:
        base = first if i == 0 else read(BASE, name, blocks[i])
        deltas = base.new_empty((len(experts), *base.shape))
        for j, e in enumerate(experts):
            d = held.pop((e, i)) if held is not None and (e, i) in held else read(e, name, blocks[i]) - base
            if e in cuts:
                d = d * cuts[e].keep(d).to(d.dtype)
            elif density[e] <= 0:
                d = torch.zeros_like(d)
            deltas[j] = d
        weights = torch.tensor(weights_list, dtype=deltas.dtype, device=deltas.device)
        weights = weights.view(-1, *[1] * (deltas.dim() - 1))
        deltas.mul_(weights)  # as mergekit's generalized task arithmetic does, from here on element-wise
        mask = get_mask(deltas, method="sum", mask_dtype=mask_dtype or base.dtype)
        mixed = (deltas * mask).sum(dim=0)
        divisor = (weights * mask).sum(dim=0)
        divisor[divisor == 0] = 1
        if normalize:
            mixed /= divisor
        if lam != 1:
            mixed *= lam
        return (base + mixed).to(base.dtype)

    return assemble(shape, ((r, block(i)) for i, r in enumerate(blocks)))


def hold_bytes(device: torch.device) -> int:
    """How much a block merge may keep between its passes: a quarter of a GPU's free memory, nothing on the CPU
    (where the blocks exist to bound host memory)."""
    if device.type != "cuda":
        return 0
    return torch.cuda.mem_get_info(device)[0] // 4


# -- Model Stock in blocks of rows ---------------------------------------------------------------------------
# Model Stock (filter_wise off) moves the base toward the experts' average by one scalar t per tensor, from the mean
# cosine between the experts' task vectors over the whole tensor. A first pass sums, block by block, each pair's
# products and each task vector's squares (in float64); the scalar is then formed in the tensor's dtype with
# mergekit's own steps, and a second pass applies it block by block.

def model_stock_blocks(recipe: Recipe, name: str, shape: tuple[int, ...], experts: Sequence[str], read: Reader,
                       step: int) -> torch.Tensor:
    """Model Stock (mergekit's `model_stock`, filter_wise off) of tensor `name`, one block of each input at a time."""
    blocks = spans(shape, step)
    n = len(experts)
    pairs = [(a, b) for a in range(n) for b in range(a + 1, n)]
    dots = squares = 0  # float64 sums on the merge device, read once at the end
    for r in blocks:
        base = read(BASE, name, r)
        offsets = [read(e, name, r) - base for e in experts]
        # products rounded to the dtype as mergekit's are, then summed
        dots = dots + torch.stack([(offsets[a] * offsets[b]).double().sum() for a, b in pairs])
        squares = squares + torch.stack([o.double().square().sum() for o in offsets])
        del offsets
    dtype = base.dtype
    dots, squares = dots.cpu(), squares.cpu()
    norms = squares.sqrt().to(dtype)
    cos_theta = torch.stack([(dots[i].to(dtype) / (norms[a] * norms[b]).clamp(min=1e-6)).clamp(-1, 1)
                             for i, (a, b) in enumerate(pairs)]).mean(dim=0).unsqueeze(-1)
    denominator = 1 + (n - 1) * cos_theta
    singular = denominator.abs() < 1e-6  # no finite estimate: mergekit keeps the base
    t = torch.where(singular, torch.zeros_like(cos_theta),
                    (n * cos_theta) / torch.where(singular, torch.ones_like(denominator), denominator))

    def block(r: tuple[int, int]) -> torch.Tensor:
        w_0 = read(BASE, name, r)
        tt = t.to(w_0.device)
        average = sum(read(e, name, r) for e in experts) / n
        return tt * average + (1 - tt) * w_0

    return assemble(shape, ((r, block(r)) for r in blocks))


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
