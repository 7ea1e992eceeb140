"""The ARM recipe, top to bottom: prepare, pool, trace, select, diagnose, transplant, evaluate, report.

`run` is what the coordinator actor executes; the tracing and rollout backends
are passed in (Ray actors, or in-process ones), so this file reads as the method
and nothing else.
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
from arm_ray.evaluation import diagnosis, metrics
from arm_ray.evaluation import results as eval_results
from arm_ray.evaluation.rollout import SuiteRun, count_tasks
from arm_ray.architectures import mlp_names
from arm_ray.config import RunConfig
from arm_ray.errors import ConfigError, DataError
from arm_ray.roles.formats import load_trajectories, require_clean
from arm_ray.roles.spans import TrajectoryEncoder
from arm_ray.saliency import Packed, TraceResult, pack_trajectories, saliency_table
from arm_ray.tracing import Sources, TraceJob

RUN_OUTPUTS = ("model", "backbone", "report.json", "report.md", "saliency.parquet", "eval.parquet", "aos.png",
               "transplant.png", "results.png")


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
    from arm_ray.world import get_suite

    for b in cfg.evaluated:
        try:
            get_suite(cfg.benchmarks[b].suite)
        except (KeyError, ImportError, AttributeError) as e:
            raise ConfigError(f"benchmarks.{b}.suite: cannot load {cfg.benchmarks[b].suite!r} ({e})") from None
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


def donors(cfg: RunConfig) -> dict[str, str]:
    return {b: cfg.benchmarks[b].expert for b in cfg.in_domain}


def diagnose(cfg: RunConfig, backbone: str, dev_scores: dict | None, source: str = "dev_results") -> list[dict]:
    """Weak benchmarks: the config's list, or the dev gaps of `dev_scores` (a results file, or dev rollouts
    where the backbone's scores are keyed `backbone`)."""
    if cfg.weak.benchmarks is not None:
        return [{"benchmark": b, "gap": None, "source": "config"} for b in cfg.weak.benchmarks]
    return diagnosis.weak_benchmarks(diagnosis.gaps(dev_scores, donors(cfg), backbone), cfg.weak.threshold,
                                     cfg.weak.top_m, source)


def suite_runs(cfg: RunConfig, benchmarks: list[str], split: str) -> list[SuiteRun]:
    n = cfg.evaluation.dev_tasks if split == "dev" else cfg.evaluation.test_tasks
    return [SuiteRun(b, cfg.benchmarks[b].suite, split, n) for b in benchmarks]


def sampling(cfg: RunConfig) -> dict[str, dict]:
    return {b: cfg.sampling_of(b).model_dump() for b in cfg.evaluated}


def table_rows(cfg: RunConfig, selected: str, evaluated: dict[str, str]) -> list[tuple[str, str]]:
    """(label, model) rows of the results table, in the paper's order, for the models evaluated."""
    rows = [("base", "base")] if "base" in evaluated else []
    rows += [(f"{e} (expert)", e) for e in cfg.expert_names() if e in evaluated]
    if all(e in evaluated for e in cfg.expert_names()):
        rows.append((f"BEST-of-{len(cfg.expert_names())} (oracle)", metrics.BEST))
    if "candidates" in cfg.evaluation.models:
        rows += [(op.name, "backbone" if op.name == selected else op.name) for op in cfg.operators]
    if "backbone" in evaluated:
        rows.append((f"AOS-selected backbone ({selected})", "backbone"))
    if "arm" in evaluated:
        rows.append(("ARM", "arm"))
    return rows


def evaluated_models(cfg: RunConfig, ctx: Context, selected: str, backbone_dir: Path, arm_dir: Path, work: Path,
                     backend) -> dict[str, str]:
    """{model name: checkpoint dir} of the models the results table asks for; writes the candidates it needs."""
    want = cfg.evaluation.models
    models: dict[str, str] = {}
    if "base" in want:
        models["base"] = str(ctx.base.path)
    if "experts" in want:
        models.update({e: str(ctx.experts[e].path) for e in cfg.expert_names()})
    if "candidates" in want:
        for r in ctx.recipes:
            if r.name != selected:  # the selected one is the backbone, evaluated once
                backend.write_candidate(r, str(work / "candidates" / r.name), cfg.max_shard_size, None,
                                        overwrite=True)
                models[r.name] = str(work / "candidates" / r.name)
    if "backbone" in want or "candidates" in want:
        models["backbone"] = str(backbone_dir)
    if "arm" in want:
        models["arm"] = str(arm_dir)
    return models


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
        log: Callable[[str], None] = print, progress=None,
        rollout_factory: Callable[[RunConfig], object] | None = None) -> dict:
    """Run ARM end to end into the run directory `out`; returns report.json's content.

    `rollout_factory(cfg)` makes the rollout backend (`evaluate(models, runs,
    sampling, on_done)`); it is called once, when the first rollout is due.
    """
    from tqdm.auto import tqdm

    progress = progress or tqdm
    out = Path(out)
    sw = Stopwatch()
    check_output_dir(out, overwrite)
    if cfg.evaluation is not None and rollout_factory is None:
        raise ConfigError("evaluation: this runner has no rollout backend; remove `evaluation` or run through "
                          "python -m arm_ray.main")
    out.mkdir(parents=True, exist_ok=True)
    # never leave an old report beside a new model
    for stale in ("report.json", "report.md", "saliency.parquet", "eval.parquet", "results.png"):
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
        checkpoints.atomic_write_parquet(out / "saliency.parquet", saliency_table([results[j.model] for j in jobs]))

    # Step 2: AOS and selection.
    with sw.stage("select"):
        bench = cfg.in_domain
        expert_sets = {b: selection.salient_set(results[cfg.benchmarks[b].expert].saliency(b, cfg.role_of(b)), cfg.k)
                       for b in bench}
        cand_sets = {r.name: salient_sets(results, cfg, r.name, bench) for r in ctx.recipes}
        aos = selection.aos_table(cand_sets, expert_sets)
        selected = selection.select(aos, [r.name for r in ctx.recipes])
        log(f"selected backbone: {selected} (mean AOS {selection.mean_aos(aos[selected]):.4f})")

    # The backbone goes to disk now: dev rollouts evaluate it, the transplant edits a copy of it.
    with sw.stage("backbone"):
        recipe = next(r for r in ctx.recipes if r.name == selected)
        work = out / ".work"
        base_dir = out / "backbone" if cfg.save_backbone else work / "backbone"
        backend.write_candidate(recipe, str(base_dir), cfg.max_shard_size, report.backbone_card(cfg, recipe),
                                overwrite=True)

    rollouts = _Lazy(rollout_factory, cfg)
    eval_rows: list[dict] = []
    dev_scores = None
    with sw.stage("diagnose"):
        if cfg.weak.from_rollouts:
            models = {e: str(ctx.experts[e].path) for e in cfg.expert_names()} | {"backbone": str(base_dir)}
            eval_rows += _rollouts(rollouts.get(), models, suite_runs(cfg, bench, "dev"), sampling(cfg),
                                   progress, "dev rollouts")
            dev_scores = metrics.scores(metrics.summarize(eval_rows, "dev"))
            weak = diagnose(cfg, "backbone", dev_scores, "dev")
        else:
            weak = diagnose(cfg, selected, ctx.dev_scores)
        log("weak benchmarks: " + (", ".join(f"{w['benchmark']} (gap {w['gap']:+.3f})" if w["gap"] is not None
                                             else w["benchmark"] for w in weak) or "none"))

    # Step 3: protection, transplant sets, conflicts, the weight edit.
    with sw.stage("transplant"):
        weak_names = [w["benchmark"] for w in weak]
        protection = transplant.protection_sets(cand_sets[selected]) if cfg.protect else None
        tsets = transplant.transplant_sets(expert_sets, weak_names, protection)
        final, conflicts = transplant.resolve_conflicts(tsets, donors(cfg), {w["benchmark"]: w["gap"] for w in weak},
                                                        cfg.conflict_policy)
        backbone = checkpoints.open_checkpoint(str(base_dir), selected)
        names = mlp_names(backbone.config["model_type"])
        edits = {d: transplant.neuron_edits(m, names, set(backbone.tensors))
                 for d, m in transplant.neurons_by_donor(final, donors(cfg)).items()}
        state = report.build(cfg, ctx, results, aos, selected, weak, final, conflicts, sw.timings, jobs)
        bar = progress(total=len(backbone.files), desc="transplant shards")
        checkpoints.transplant_checkpoint(backbone, ctx.experts, edits, transplant.apply_edit, out / "model",
                                          readme=report.model_card(state), overwrite=True,
                                          progress=bar.update)
        bar.close()

    # The results table: test rollouts of the models the config names.
    with sw.stage("evaluate"):
        if cfg.evaluation is not None:
            models = evaluated_models(cfg, ctx, selected, base_dir, out / "model", work, backend)
            eval_rows += _rollouts(rollouts.get(), models, suite_runs(cfg, cfg.evaluated, "test"), sampling(cfg),
                                   progress, "test rollouts")
            state["evaluation"] = evaluation_state(cfg, selected, models, eval_rows)
        if eval_rows:
            eval_results.write_eval(out / "eval.parquet", eval_rows)
            if dev_scores is not None:
                state["dev_scores"] = dev_scores
        shutil.rmtree(work / "candidates", ignore_errors=True)
        if not cfg.save_backbone:
            shutil.rmtree(work, ignore_errors=True)

    with sw.stage("report"):
        state["timings"] = sw.timings
        report.write(out, state)
    state["timings"] = sw.timings
    checkpoints.atomic_write_text(out / "report.json", json.dumps(state, indent=2) + "\n")
    return state


def evaluation_state(cfg: RunConfig, selected: str, models: dict[str, str], rows: list[dict]) -> dict:
    summary = metrics.summarize(rows, "test")
    scores = metrics.scores(summary)
    table, table_md = metrics.table(scores, table_rows(cfg, selected, models), cfg.expert_names(), cfg.evaluated)
    return {"split": "test", "tasks_per_benchmark": cfg.evaluation.test_tasks, "benchmarks": cfg.evaluated,
            "sampling": sampling(cfg), "models": models, "summary": summary, "table": table,
            "table_md": table_md, "rates_md": metrics.rates_table(summary, list(models), cfg.evaluated)}


class _Lazy:
    """The rollout backend, made on first use (runs without rollouts never start an engine)."""

    def __init__(self, factory, cfg):
        self.factory, self.cfg, self.value = factory, cfg, None

    def get(self):
        if self.value is None:
            self.value = self.factory(self.cfg)
        return self.value


def _rollouts(backend, models: dict[str, str], runs: list[SuiteRun], sampling_: dict, progress, desc: str):
    bar = progress(total=len(models) * count_tasks(runs), desc=desc)
    rows = backend.evaluate(models, runs, sampling_, on_done=lambda done: bar.update(len(done)))
    bar.close()
    return rows

