"""The ARM recipe, top to bottom: prepare, trace, select, backbone, diagnose, transplant, evaluate, report.

`run` reads as the method; each stage below is a function that takes and
returns small typed results. The tracing backend (`tracing.TracingBackend`)
and the rollout backend (`rollout.backend.RolloutBackend`) are passed in: Ray
actors in a real run (`actors/coordinator.py`), in-process ones in tests.
"""

from __future__ import annotations

import logging
import shutil
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from arm_ray import checkpoints, report, selection, transplant
from arm_ray.architectures import mlp_names
from arm_ray.config import RunConfig
from arm_ray.errors import ConfigError
from arm_ray.evaluation import diagnosis, intervals, metrics
from arm_ray.prepare import Context, RunLock, check_output_dir, prepare, remove_stale_outputs
from arm_ray.rollout import results as eval_results
from arm_ray.rollout.backend import RolloutBackend
from arm_ray.rollout.run import SuiteRun, count_tasks
from arm_ray.saliency import TraceResult, saliency_table
from arm_ray.tracing import TraceJob, TracingBackend

log = logging.getLogger(__name__)


@dataclass
class Traces:
    jobs: list[TraceJob]
    results: dict[str, TraceResult]  # model name -> sums


@dataclass
class Selection:
    expert_sets: dict[str, np.ndarray]  # benchmark -> S(M_b; b, r_b), the donor's salient set
    candidate_sets: dict[str, dict[str, np.ndarray]]  # candidate -> benchmark -> S(g; b, r_b)
    aos: dict[str, dict[str, float]]  # candidate -> benchmark -> AOS(g; b)
    selected: str  # the backbone M0


@dataclass
class TransplantPlan:
    weak: list[dict]  # [{benchmark, gap, source}]
    final: dict[str, np.ndarray]  # weak benchmark -> T_b after conflicts
    conflicts: np.ndarray  # neurons wanted by two donors


@dataclass
class Evaluation:
    rows: list[dict]  # eval rows, dev and test
    dev_scores: dict | None  # {model: {benchmark: score}} of the dev rollouts
    table: dict | None  # report.json's `evaluation`: the results table


def run(cfg: RunConfig, out: Path, tracing_factory: Callable[[Context], TracingBackend],
        rollouts_factory: Callable[[RunConfig], RolloutBackend] | None = None, overwrite: bool = False,
        progress=None) -> dict:
    """Run ARM end to end into the run directory `out`; returns report.json's content.

    `rollouts_factory(cfg)` is called once, when the first rollout is due (runs
    without rollouts never start an engine).
    """
    from tqdm.auto import tqdm

    out, progress, clock = Path(out), progress or tqdm, Stopwatch()
    check_output_dir(out, overwrite)
    if cfg.evaluation is not None and rollouts_factory is None:
        raise ConfigError("evaluation: this runner has no rollout backend; remove `evaluation` or run through "
                          "python -m arm_ray.main")
    out.mkdir(parents=True, exist_ok=True)
    with RunLock(out):  # one run per output directory at a time
        remove_stale_outputs(out)
        with clock("prepare"):
            ctx = prepare(cfg)
        for w in ctx.warnings:
            log.warning(w)
        tracing, rollouts = tracing_factory(ctx), Lazy(rollouts_factory, cfg)
        work = out / ".work"
        backbone_dir = out / "backbone" if cfg.save_backbone else work / "backbone"
        with clock("trace"):  # steps 1 + 2: each candidate is built where it is traced
            traces = trace(ctx, tracing, out, progress)
        with clock("select"):  # step 2: AOS
            chosen = select(ctx, traces)
        with clock("backbone"):  # on disk now: dev rollouts evaluate it, the transplant edits a copy of it
            write_backbone(ctx, chosen, tracing, backbone_dir)
        with clock("diagnose"):  # step 3: which benchmarks the backbone is weak on
            weak, dev_rows, dev_scores = diagnose(ctx, chosen, backbone_dir, rollouts, progress)
        with clock("transplant"):  # step 3: protection, transplant sets, conflicts, the weight edit
            plan = plan_transplant(ctx, chosen, weak)
            write_model(ctx, traces, chosen, plan, backbone_dir, out, progress)
        with clock("evaluate"):  # the results table: test rollouts of the models the config names
            evaluation = evaluate(ctx, chosen, backbone_dir, out, tracing, rollouts, progress, dev_rows, dev_scores)
        state = report.build(ctx, traces, chosen, plan, evaluation, clock.timings,
                             placement(tracing) + (placement(rollouts.value) if rollouts.value else []))
        report.write(out, state)
        return state


# -- the stages --------------------------------------------------------------------------------------------

def trace_jobs(ctx: Context) -> list[TraceJob]:
    """Each expert on the benchmarks it serves; each candidate on every in-domain benchmark."""
    cfg = ctx.cfg
    jobs = [TraceJob(e, "expert", tuple(b for b in cfg.in_domain if cfg.benchmarks[b].expert == e), expert=e)
            for e in cfg.expert_names()]
    jobs += [TraceJob(r.name, "candidate", tuple(cfg.in_domain), recipe=r) for r in ctx.recipes]
    return jobs


def trace(ctx: Context, tracing: TracingBackend, out: Path, progress) -> Traces:
    jobs = trace_jobs(ctx)
    bar = progress(total=len(jobs), desc="trace models")
    results = {r.model: r for r in tracing.trace(jobs, ctx.packed, on_done=lambda r: bar.update(1))}
    bar.close()
    checkpoints.atomic_write_parquet(out / "saliency.parquet", saliency_table([results[j.model] for j in jobs]))
    return Traces(jobs, results)


def salient_sets(traces: Traces, cfg: RunConfig, model: str, benchmarks) -> dict[str, np.ndarray]:
    """S(model; b, r_b) for each benchmark b, with b's role."""
    return {b: selection.salient_set(traces.results[model].saliency(b, cfg.role_of(b)), cfg.k) for b in benchmarks}


def select(ctx: Context, traces: Traces) -> Selection:
    """Eq. 3-5: salient sets, AOS of every candidate against the experts, the argmax of its mean."""
    cfg, bench = ctx.cfg, ctx.cfg.in_domain
    expert_sets = {b: salient_sets(traces, cfg, cfg.benchmarks[b].expert, [b])[b] for b in bench}
    cand_sets = {r.name: salient_sets(traces, cfg, r.name, bench) for r in ctx.recipes}
    aos = selection.aos_table(cand_sets, expert_sets)
    selected = selection.select(aos, [r.name for r in ctx.recipes])
    log.info(f"selected backbone: {selected} (mean AOS {selection.mean_aos(aos[selected]):.4f})")
    return Selection(expert_sets, cand_sets, aos, selected)


def write_backbone(ctx: Context, chosen: Selection, tracing: TracingBackend, backbone_dir: Path) -> None:
    recipe = next(r for r in ctx.recipes if r.name == chosen.selected)
    tracing.write_candidate(recipe, str(backbone_dir), ctx.cfg.max_shard_size, report.backbone_card(ctx.cfg, recipe),
                            overwrite=True)


def diagnose(ctx: Context, chosen: Selection, backbone_dir: Path, rollouts: "Lazy", progress
             ) -> tuple[list[dict], list[dict], dict | None]:
    """The weak benchmarks, and the dev rows and scores when dev rollouts decided them."""
    cfg = ctx.cfg
    if cfg.weak.from_rollouts:
        models = {e: str(ctx.experts[e].path) for e in cfg.expert_names()} | {"backbone": str(backbone_dir)}
        rows = rollout_rows(rollouts.get(), models, suite_runs(cfg, cfg.in_domain, "dev"), sampling(cfg),
                            progress, "dev rollouts")
        dev_scores = metrics.scores(metrics.summarize(rows, "dev"))
        weak = weak_benchmarks(cfg, "backbone", dev_scores, "dev")
    else:
        rows, dev_scores = [], None
        weak = weak_benchmarks(cfg, chosen.selected, ctx.dev_scores)
    log.info("weak benchmarks: " + (", ".join(f"{w['benchmark']} (gap {w['gap']:+.3f})" if w["gap"] is not None
                                              else w["benchmark"] for w in weak) or "none"))
    return weak, rows, dev_scores


def weak_benchmarks(cfg: RunConfig, backbone: str, dev_scores: dict | None, source: str = "dev_results"
                    ) -> list[dict]:
    """The config's list, or the benchmarks whose dev gap (donor - `backbone`) passes the threshold."""
    if cfg.weak.benchmarks is not None:
        return [{"benchmark": b, "gap": None, "source": "config"} for b in cfg.weak.benchmarks]
    return diagnosis.weak_benchmarks(diagnosis.gaps(dev_scores, cfg.donors(), backbone), cfg.weak.threshold,
                                     cfg.weak.top_m, source)


def plan_transplant(ctx: Context, chosen: Selection, weak: list[dict]) -> TransplantPlan:
    """Eq. 7-8: P_-b from the backbone's sets, T_b = S(M_b; b) minus P_-b, then conflicts between donors."""
    cfg = ctx.cfg
    protection = transplant.protection_sets(chosen.candidate_sets[chosen.selected]) if cfg.protect else None
    tsets = transplant.transplant_sets(chosen.expert_sets, [w["benchmark"] for w in weak], protection)
    final, conflicts = transplant.resolve_conflicts(tsets, cfg.donors(), {w["benchmark"]: w["gap"] for w in weak},
                                                    cfg.conflict_policy)
    return TransplantPlan(weak, final, conflicts)


def write_model(ctx: Context, traces: Traces, chosen: Selection, plan: TransplantPlan, backbone_dir: Path,
                out: Path, progress) -> None:
    """Eq. 6: the backbone's files with each donor's moved rows and columns written in; `out/model` atomically."""
    backbone = checkpoints.open_checkpoint(str(backbone_dir), chosen.selected)
    names = mlp_names(backbone.config["model_type"])
    edits = {d: transplant.neuron_edits(m, names, set(backbone.tensors))
             for d, m in transplant.neurons_by_donor(plan.final, ctx.cfg.donors()).items()}
    card = report.model_card(report.build(ctx, traces, chosen, plan))
    bar = progress(total=len(backbone.files), desc="transplant shards")
    checkpoints.transplant_checkpoint(backbone, ctx.experts, edits, transplant.apply_edit, out / "model",
                                      readme=card, overwrite=True, progress=bar.update)
    bar.close()


def evaluate(ctx: Context, chosen: Selection, backbone_dir: Path, out: Path, tracing: TracingBackend,
             rollouts: "Lazy", progress, dev_rows: list[dict], dev_scores: dict | None) -> Evaluation:
    cfg, work, rows, table = ctx.cfg, out / ".work", list(dev_rows), None
    if cfg.evaluation is not None:
        models = evaluated_models(ctx, chosen.selected, backbone_dir, out / "model", work, tracing)
        rows += rollout_rows(rollouts.get(), models, suite_runs(cfg, cfg.evaluated, "test"), sampling(cfg),
                             progress, "test rollouts")
        table = results_table(cfg, chosen.selected, models, rows)
        write_benchmark_results(cfg, rows, out)
    if rows:
        eval_results.write_eval(out / "eval.parquet", rows)
    shutil.rmtree(work / "candidates", ignore_errors=True)
    if not cfg.save_backbone:
        shutil.rmtree(work, ignore_errors=True)
    return Evaluation(rows, dev_scores, table)


# -- helpers of the stages ---------------------------------------------------------------------------------

def suite_runs(cfg: RunConfig, benchmarks: list[str], split: str) -> list[SuiteRun]:
    n = cfg.evaluation.dev_tasks if split == "dev" else cfg.evaluation.test_tasks
    return [SuiteRun(b, cfg.benchmarks[b].suite, split, n, options=cfg.benchmarks[b].options) for b in benchmarks]


def sampling(cfg: RunConfig) -> dict[str, dict]:
    return {b: cfg.sampling_of(b).model_dump() for b in cfg.evaluated}


def rollout_rows(backend: RolloutBackend, models: dict[str, str], runs: list[SuiteRun], sampling_: dict,
                 progress, desc: str) -> list[dict]:
    bar = progress(total=len(models) * count_tasks(runs), desc=desc)
    rows = backend.evaluate(models, runs, sampling_, on_done=lambda done: bar.update(len(done)))
    bar.close()
    return rows


def evaluated_models(ctx: Context, selected: str, backbone_dir: Path, arm_dir: Path, work: Path,
                     tracing: TracingBackend) -> dict[str, str]:
    """{model name: checkpoint dir} of the models the results table asks for; writes the candidates it needs."""
    cfg, want = ctx.cfg, ctx.cfg.evaluation.models
    models: dict[str, str] = {}
    if "base" in want:
        models["base"] = str(ctx.base.path)
    if "experts" in want:
        models.update({e: str(ctx.experts[e].path) for e in cfg.expert_names()})
    if "candidates" in want:
        for r in ctx.recipes:
            if r.name != selected:  # the selected one is the backbone, evaluated once
                tracing.write_candidate(r, str(work / "candidates" / r.name), cfg.max_shard_size, None,
                                        overwrite=True)
                models[r.name] = str(work / "candidates" / r.name)
    if "backbone" in want or "candidates" in want:
        models["backbone"] = str(backbone_dir)
    if "arm" in want:
        models["arm"] = str(arm_dir)
    return models


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


def results_table(cfg: RunConfig, selected: str, models: dict[str, str], rows: list[dict]) -> dict:
    """report.json's `evaluation`: the table, with 95 % bootstrap intervals of each model's AVG and WS and the
    paired difference ARM - AOS-selected backbone on the same tasks (per benchmark, AVG, WS)."""
    summary = metrics.summarize(rows, "test")
    table, table_md = metrics.table(metrics.scores(summary), table_rows(cfg, selected, models), cfg.expert_names(),
                                    cfg.evaluated)
    state = {"split": "test", "tasks_per_benchmark": cfg.evaluation.test_tasks, "benchmarks": cfg.evaluated,
             "sampling": sampling(cfg), "models": models, "summary": summary, "table": table,
             "table_md": table_md, "rates_md": metrics.rates_table(summary, list(models), cfg.evaluated),
             "pass_k_md": metrics.pass_k_table(summary, list(models), cfg.evaluated),
             "notes": benchmark_notes(cfg),
             "intervals": intervals.model_intervals(rows, list(models), cfg.evaluated, seed=cfg.seed)}
    if "arm" in models and "backbone" in models:
        state["paired"] = {"a": "arm", "b": "backbone",
                           "difference": intervals.paired_difference(rows, "arm", "backbone", cfg.evaluated,
                                                                     seed=cfg.seed)}
    return state


def benchmark_notes(cfg: RunConfig) -> dict[str, str]:
    """What a reader must know before comparing a benchmark's scores with published ones."""
    notes = {}
    for run in suite_runs(cfg, cfg.evaluated, "test"):
        if not run.make_suite().comparable:
            notes[run.benchmark] = "scripted user simulator: not comparable with published numbers"
    return notes


def write_benchmark_results(cfg: RunConfig, rows: list[dict], out: Path) -> None:
    """Each model's test episodes on a suite with its own results format (τ²: `Results` JSON), under out/results/."""
    for run in suite_runs(cfg, cfg.evaluated, "test"):
        suite = run.make_suite()
        writer = getattr(suite, "write_results", None)
        if writer is None:
            continue
        mine = [r for r in rows if r["split"] == "test" and r["benchmark"] == run.benchmark]
        for model in dict.fromkeys(r["model"] for r in mine):
            (out / "results").mkdir(exist_ok=True)
            writer([r for r in mine if r["model"] == model], out / "results" / f"{model}.{run.benchmark}.json", model)


class Stopwatch:
    """Seconds per stage, in the order the stages ran: `with clock("trace"): ...`."""

    def __init__(self):
        self.timings: dict[str, float] = {}

    @contextmanager
    def __call__(self, name: str):
        t0 = time.perf_counter()
        try:
            yield
        finally:
            self.timings[name] = round(time.perf_counter() - t0, 3)


def placement(backend) -> list[dict]:
    """Where a backend's actors ran (Ray backends say; a backend in this process has nothing to add)."""
    return backend.placement() if hasattr(backend, "placement") else []


class Lazy:
    """The rollout backend, made on first use."""

    def __init__(self, factory, cfg):
        self.factory, self.cfg, self.value = factory, cfg, None

    def get(self):
        if self.value is None:
            self.value = self.factory(self.cfg)
        return self.value
