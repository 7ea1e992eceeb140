"""The ARM recipe, top to bottom: prepare, pool, trace, select, diagnose, transplant, report.

`run` is what the coordinator actor executes; the tracing backend is passed in
(Ray actors, or `tracing.LocalBackend` in-process), so this file reads as the
method and nothing else.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from arm_ray import checkpoints, pool, report, selection, transplant
from arm_ray.architectures import mlp_names
from arm_ray.config import RunConfig
from arm_ray.errors import ConfigError, DataError
from arm_ray.roles.formats import load_trajectories, require_clean
from arm_ray.roles.spans import TrajectoryEncoder
from arm_ray.saliency import Packed, TraceResult, pack_trajectories, saliency_table
from arm_ray.tracing import Sources, TraceJob

RUN_OUTPUTS = ("model", "backbone", "report.json", "report.md", "saliency.parquet", "aos.png", "transplant.png")


@dataclass
class Context:
    cfg: RunConfig
    base: checkpoints.Checkpoint
    experts: dict[str, checkpoints.Checkpoint]
    recipes: list[pool.Recipe]
    packed: dict[str, Packed]  # benchmark -> packed calibration
    dev_scores: dict | None
    warnings: list[str] = field(default_factory=list)

    def sources(self, device: str) -> Sources:
        return Sources(str(self.base.path), {n: str(c.path) for n, c in self.experts.items()},
                       self.cfg.trace.dtype, device)


def check_output_dir(out: Path, overwrite: bool) -> None:
    present = [n for n in RUN_OUTPUTS if (out / n).exists()]
    if present and not overwrite:
        raise ConfigError(f"{out} already holds a run ({', '.join(present)}); pass --overwrite to replace it")


def prepare(cfg: RunConfig) -> Context:
    """Every check that can fail, before any weight is loaded: checkpoints, operators, data, roles, weak."""
    base = checkpoints.open_checkpoint(cfg.base.path, "base")
    experts = {n: checkpoints.open_checkpoint(cfg.experts[n].path, n) for n in cfg.expert_names()}
    checkpoints.check_compatible([base, *experts.values()])
    try:
        mlp_names(base.config.get("model_type", ""))
    except KeyError as e:
        raise ConfigError(f"base: {e.args[0]}") from None
    recipes = [pool.Recipe(op.name, op.method, dict(op.parameters), cfg.seed) for op in cfg.operators]
    for i, r in enumerate(recipes):
        pool.validate(r, len(experts), f"operators[{i}] ({r.name})")
    packed, warnings = encode_calibration(cfg, base)
    dev_scores = load_dev_scores(cfg) if cfg.weak.dev_results else None
    return Context(cfg, base, experts, recipes, packed, dev_scores, warnings)


def encode_calibration(cfg: RunConfig, base: checkpoints.Checkpoint) -> tuple[dict[str, Packed], list[str]]:
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(base.path)
    encoder = TrajectoryEncoder(tok, cfg.calibration.positions, cfg.calibration.max_length)
    by_bench: dict[str, list] = {b: [] for b in cfg.in_domain}
    warnings = []
    for i, f in enumerate(cfg.calibration.files):
        loaded = load_trajectories(f.path, f.benchmark, f.sample, cfg.calibration.seed)
        warnings += require_clean(loaded, f.path, cfg.calibration.allow_bad_records)
        for t in loaded.trajectories:
            if t.benchmark is None:
                raise DataError(f"{t.source}: record has no `benchmark` field and calibration.files[{i}] "
                                "names none")
            if t.benchmark not in cfg.benchmarks:
                raise DataError(f"{t.source}: benchmark {t.benchmark!r} is not in the config's benchmarks")
            if t.benchmark in by_bench:  # out-of-domain benchmarks are evaluated, never traced
                by_bench[t.benchmark].append(t)
    packed = {}
    for b, trajs in by_bench.items():
        role = cfg.role_of(b)
        if not trajs:
            raise DataError(f"benchmark {b}: no calibration trajectory (check calibration.files)")
        roles = list(dict.fromkeys([role, *cfg.calibration.extra_roles]))
        encoded = encoder.encode(trajs, {b: roles}, {b: cfg.parser_of(b)})
        truncated = sum(e.truncated for e in encoded)
        if truncated:
            warnings.append(f"benchmark {b}: {truncated} of {len(encoded)} trajectories cut to "
                            f"calibration.max_length={cfg.calibration.max_length} tokens")
        packed[b] = pack_trajectories(encoded, [(b, r) for r in roles], cfg.trace.max_tokens_per_batch)
        if packed[b].n_tokens[0] == 0:
            raise DataError(f"benchmark {b}: no calibration trajectory has a {role!r} token "
                            f"(parser {cfg.parser_of(b)}); check the data or the role")
    return packed, warnings


def load_dev_scores(cfg: RunConfig) -> dict:
    path = Path(cfg.weak.dev_results)
    try:
        scores = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"weak.dev_results: {path}: no such file") from None
    except json.JSONDecodeError as e:
        raise ConfigError(f"{path}:{e.lineno}: not valid JSON ({e.msg})") from None
    needed = [(cfg.benchmarks[b].expert, b) for b in cfg.in_domain]
    needed += [(op.name, b) for op in cfg.operators for b in cfg.in_domain]  # any candidate may be selected
    for model, b in needed:
        value = scores.get(model, {}).get(b) if isinstance(scores.get(model), dict) else None
        if not isinstance(value, (int, float)):
            raise ConfigError(f'{path}: expected a number at ["{model}"]["{b}"] (dev score of {model} on {b})')
    return scores


def trace_jobs(ctx: Context) -> list[TraceJob]:
    cfg = ctx.cfg
    jobs = [TraceJob(e, "expert", tuple(b for b in cfg.in_domain if cfg.benchmarks[b].expert == e), expert=e)
            for e in cfg.expert_names()]
    jobs += [TraceJob(r.name, "candidate", tuple(cfg.in_domain), recipe=r) for r in ctx.recipes]
    return jobs


def salient_sets(results: dict[str, TraceResult], cfg: RunConfig, model: str, benchmarks) -> dict[str, np.ndarray]:
    return {b: selection.salient_set(results[model].saliency(b, cfg.role_of(b)), cfg.k) for b in benchmarks}


def diagnose(cfg: RunConfig, selected: str, dev_scores: dict | None) -> list[dict]:
    """Weak benchmarks: the config's list, or gap_b = score(M_b) - score(M0) > threshold on dev."""
    if cfg.weak.benchmarks is not None:
        return [{"benchmark": b, "gap": None, "source": "config"} for b in cfg.weak.benchmarks]
    gaps = {b: float(dev_scores[cfg.benchmarks[b].expert][b]) - float(dev_scores[selected][b]) for b in cfg.in_domain}
    weak = [b for b in cfg.in_domain if gaps[b] > cfg.weak.threshold]
    weak.sort(key=lambda b: (-gaps[b], cfg.in_domain.index(b)))
    if cfg.weak.top_m is not None:
        weak = weak[: cfg.weak.top_m]
    weak.sort(key=cfg.in_domain.index)
    return [{"benchmark": b, "gap": gaps[b], "source": "dev_results"} for b in weak]


class Stopwatch:
    def __init__(self):
        self.timings: dict[str, float] = {}

    def stage(self, name: str):
        sw = self

        class _T:
            def __enter__(self):
                self.t0 = time.perf_counter()

            def __exit__(self, *exc):
                sw.timings[name] = round(time.perf_counter() - self.t0, 3)

        return _T()


def run(cfg: RunConfig, out: Path, backend_factory: Callable[[Context], object], overwrite: bool = False,
        log: Callable[[str], None] = print, progress=None) -> dict:
    """Run ARM end to end into the run directory `out`; returns report.json's content."""
    from tqdm.auto import tqdm

    progress = progress or tqdm
    out = Path(out)
    sw = Stopwatch()
    check_output_dir(out, overwrite)
    out.mkdir(parents=True, exist_ok=True)
    for stale in ("report.json", "report.md", "saliency.parquet"):  # never leave an old report beside a new model
        if (out / stale).exists():
            os.remove(out / stale)

    with sw.stage("prepare"):
        ctx = prepare(cfg)
    for w in ctx.warnings:
        log(f"warning: {w}")
    backend = backend_factory(ctx)

    # Step 1 + 2: build each candidate where it is traced; trace experts on their own benchmarks.
    with sw.stage("trace"):
        jobs = trace_jobs(ctx)
        bar = progress(total=len(jobs), desc="trace models")
        results = {r.model: r for r in backend.trace(jobs, ctx.packed, on_done=lambda r: bar.update(1))}
        bar.close()
        _write_parquet(out / "saliency.parquet", saliency_table([results[j.model] for j in jobs]))

    # Step 2: AOS and selection.
    with sw.stage("select"):
        bench = cfg.in_domain
        expert_sets = {b: selection.salient_set(results[cfg.benchmarks[b].expert].saliency(b, cfg.role_of(b)), cfg.k)
                       for b in bench}
        cand_sets = {r.name: salient_sets(results, cfg, r.name, bench) for r in ctx.recipes}
        aos = selection.aos_table(cand_sets, expert_sets)
        selected = selection.select(aos, [r.name for r in ctx.recipes])
        log(f"selected backbone: {selected} (mean AOS {selection.mean_aos(aos[selected]):.4f})")

    with sw.stage("diagnose"):
        weak = diagnose(cfg, selected, ctx.dev_scores)

    # Step 3: protection, transplant sets, conflicts, the weight edit.
    with sw.stage("transplant"):
        donors = {b: cfg.benchmarks[b].expert for b in bench}
        weak_names = [w["benchmark"] for w in weak]
        protection = transplant.protection_sets(cand_sets[selected]) if cfg.protect else None
        tsets = transplant.transplant_sets(expert_sets, weak_names, protection)
        final, conflicts = transplant.resolve_conflicts(tsets, donors, {w["benchmark"]: w["gap"] for w in weak},
                                                        cfg.conflict_policy)
        recipe = next(r for r in ctx.recipes if r.name == selected)
        base_dir = out / "backbone" if cfg.save_backbone else out / ".work" / "backbone"
        backbone_card = report.backbone_card(cfg, recipe)
        backend.write_candidate(recipe, str(base_dir), cfg.max_shard_size, backbone_card, overwrite=True)
        backbone = checkpoints.open_checkpoint(str(base_dir), selected)
        names = mlp_names(backbone.config["model_type"])
        edits = {d: transplant.neuron_edits(m, names, set(backbone.tensors))
                 for d, m in transplant.neurons_by_donor(final, donors).items()}
        state = report.build(cfg, ctx, results, aos, selected, weak, final, conflicts, sw.timings, jobs)
        bar = progress(total=len(backbone.files), desc="transplant shards")
        checkpoints.transplant_checkpoint(backbone, ctx.experts, edits, transplant.apply_edit, out / "model",
                                          readme=report.model_card(state), overwrite=True,
                                          progress=bar.update)
        bar.close()
        if not cfg.save_backbone:
            shutil.rmtree(out / ".work", ignore_errors=True)

    with sw.stage("report"):
        state["timings"] = sw.timings
        report.write(out, state)
    state["timings"] = sw.timings
    checkpoints.atomic_write_text(out / "report.json", json.dumps(state, indent=2) + "\n")
    return state


def _write_parquet(path: Path, table) -> None:
    import pyarrow.parquet as pq

    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    pq.write_table(table, tmp)
    os.replace(tmp, path)
