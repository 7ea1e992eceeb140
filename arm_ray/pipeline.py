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
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable

import numpy as np

from arm_ray import atomic, checkpoints, report, selection, transplant
from arm_ray.arm_model import write_arm_model
from arm_ray.config import RunConfig
from arm_ray.errors import ConfigError
from arm_ray.evaluation import diagnosis, intervals, metrics
from arm_ray.prepare import (
    Context,
    RunLock,
    check_output_dir,
    prepare,
    remove_stale_outputs,
)
from arm_ray.rollout import results as eval_results
from arm_ray.rollout.backend import RolloutBackend
from arm_ray.rollout.run import SuiteRun, count_tasks
from arm_ray.saliency import TraceResult, saliency_table
from arm_ray.stages import Keys, Store
from arm_ray.tracing import TraceJob, TracingBackend

log = logging.getLogger(__name__)
LOG_DIR = "logs"  # the rollout actors' engine output (one file per actor process), unless --verbose


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
        progress=None, resume: bool = False) -> dict:
    """Run ARM end to end into the run directory `out`; returns report.json's content.

    The backends are made on first use (`tracing_factory(ctx)`, `rollouts_factory(cfg)`), so a run without
    rollouts, or a resumed run whose stages are all stored, starts no actor it does not need. `resume`:
    a stage whose inputs have not changed since a killed run finished it is not run again (`stages.py`).
    """
    from tqdm.auto import tqdm

    out, clock = Path(out), Stopwatch()
    check_output_dir(out, overwrite, resume=resume)
    if cfg.evaluation is not None and rollouts_factory is None:
        raise ConfigError("evaluation: this runner has no rollout backend; remove `evaluation` or run through "
                          "python -m arm_ray.main")
    out.mkdir(parents=True, exist_ok=True)
    with RunLock(out):  # one run per output directory at a time
        remove_stale_outputs(out)
        if not resume:  # a resumed run adds its actors' logs beside the killed run's
            shutil.rmtree(out / LOG_DIR, ignore_errors=True)
        atomic.atomic_write_text(out / "run_config.json", cfg.model_dump_json(indent=2))  # what analyze reruns
        with clock("prepare"):
            ctx = prepare(cfg)
        for w in ctx.warnings:
            log.warning(w)
        s = Shared(ctx, out, Store(out, resume), Keys(ctx), Lazy(tracing_factory, ctx), Lazy(rollouts_factory, cfg),
                   progress or tqdm, out / "backbone" if cfg.save_backbone else out / ".work" / "backbone")
        with clock("aim"):  # AIM candidates need the base's activations on the calibration text first
            measure_importance(s)
        with clock("trace"):  # steps 1 + 2: each candidate is built where it is traced
            traces = trace(s)
        with clock("select"):  # step 2: AOS
            chosen = select(ctx, traces)
        with clock("backbone"):  # on disk now: dev rollouts evaluate it, the transplant edits a copy of it
            backbone = write_backbone(s, chosen)
        with clock("diagnose"):  # step 3: which benchmarks the backbone is weak on
            weak, dev_rows, dev_scores = diagnose(s, chosen, backbone)
        with clock("transplant"):  # step 3: protection, transplant sets, conflicts, the weight edit
            plan = plan_transplant(ctx, chosen, weak)
            arm = write_model(s, traces, chosen, plan, backbone)
        with clock("evaluate"):  # the results table: test rollouts of the models the config names
            evaluation = evaluate(s, chosen, {"backbone": backbone, "arm": arm}, dev_rows, dev_scores)
        state = report.build(ctx, traces, chosen, plan, evaluation, clock.timings,
                             placement(s.tracing.value) + placement(s.rollouts.value), s.store.status)
        report.write(out, state)
        return state


@dataclass
class Shared:
    """What every stage of one run uses: its inputs, run directory, stage store and keys, backends, progress."""
    ctx: Context
    out: Path
    store: Store
    keys: Keys
    tracing: "Lazy"
    rollouts: "Lazy"
    progress: Callable
    backbone_dir: Path


# -- the stages --------------------------------------------------------------------------------------------

IMPORTANCE = "aim_importance.safetensors"  # in the run's store


def measure_importance(s: Shared) -> None:
    """AIM's base input importance, measured once on a tracer (when an operator asks for AIM); the AIM recipes
    then read it wherever they are merged."""
    if all(r.aim is None for r in s.ctx.recipes):
        return
    path = s.store.path(IMPORTANCE)
    s.store.step("aim", s.keys.importance(), [path], lambda: s.tracing.get().importance(s.ctx.packed, str(path)))
    attach_importance(s.ctx, path)


def attach_importance(ctx: Context, path: Path) -> None:
    ctx.recipes = [replace(r, importance=str(path)) if r.aim is not None else r for r in ctx.recipes]


def trace_jobs(ctx: Context) -> list[TraceJob]:
    """Each expert on the benchmarks it serves; each candidate on every in-domain benchmark."""
    cfg = ctx.cfg
    jobs = [TraceJob(e, "expert", tuple(b for b in cfg.in_domain if cfg.benchmarks[b].expert == e), expert=e)
            for e in cfg.expert_names()]
    jobs += [TraceJob(r.name, "candidate", tuple(cfg.in_domain), recipe=r) for r in ctx.recipes]
    return jobs


def trace(s: Shared) -> Traces:
    """Every job's sums; each is stored as soon as it arrives, and a resumed run traces only the missing ones."""
    jobs = trace_jobs(s.ctx)
    keys = {j.model: s.keys.trace(j) for j in jobs}
    results = {j.model: s.store.load_trace(j.model, keys[j.model]) for j in jobs}
    todo = [j for j in jobs if results[j.model] is None]
    bar = s.progress(total=len(jobs), desc="trace models")
    if len(todo) < len(jobs):
        bar.update(len(jobs) - len(todo))  # the stored ones

    def arrived(r: TraceResult) -> None:  # stored before it counts as done
        s.store.save_trace(r, keys[r.model])
        bar.update(1)

    if todo:
        results |= {r.model: r for r in s.tracing.get().trace(todo, s.ctx.packed, on_done=arrived)}
    bar.close()
    s.store.status["trace"] = ("computed" if len(todo) == len(jobs) else "reused" if not todo else
                               f"{len(jobs) - len(todo)} of {len(jobs)} models reused")
    atomic.atomic_write_parquet(s.out / "saliency.parquet", saliency_table([results[j.model] for j in jobs]))
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
    units = metrics.units(bench, cfg.aggregate_of)  # benchmarks joined in an aggregate count once in the mean
    selected = selection.select(aos, [r.name for r in ctx.recipes], units)
    log.info(f"selected backbone: {selected} (mean AOS {selection.mean_aos(aos[selected], units):.4f})")
    return Selection(expert_sets, cand_sets, aos, selected)


def write_backbone(s: Shared, chosen: Selection) -> str:
    """The selected candidate as a checkpoint in `s.backbone_dir`; returns its key."""
    recipe = next(r for r in s.ctx.recipes if r.name == chosen.selected)
    card = report.backbone_card(s.ctx.cfg, recipe)
    key = s.keys.backbone(recipe, card)
    s.store.step("backbone", key, [s.backbone_dir], lambda: s.tracing.get().write_candidate(
        recipe, str(s.backbone_dir), s.ctx.cfg.max_shard_size, card, overwrite=True))
    return key


def diagnose(s: Shared, chosen: Selection, backbone: str) -> tuple[list[dict], list[dict], dict | None]:
    """The weak benchmarks, and the dev rows and scores when dev rollouts decided them."""
    cfg = s.ctx.cfg
    if cfg.weak.from_rollouts:
        models = {e: (str(s.ctx.experts[e].path), s.keys.weights[e]) for e in cfg.expert_names()}
        models["backbone"] = (str(s.backbone_dir), backbone)
        rows = stored_rollouts(s, "dev_rollouts", models, suite_runs(cfg, cfg.in_domain, "dev"))
        dev_scores = metrics.scores(metrics.summarize(rows, "dev"))
        weak = weak_benchmarks(cfg, "backbone", dev_scores, "dev")
    else:
        rows, dev_scores = [], None
        weak = weak_benchmarks(cfg, chosen.selected, s.ctx.dev_scores)
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


def write_model(s: Shared, traces: Traces, chosen: Selection, plan: TransplantPlan, backbone: str) -> str:
    """Eq. 6: the backbone's files with each donor's moved rows and columns written in; `out/model` atomically.
    Returns the model's key."""
    card = report.model_card(report.build(s.ctx, traces, chosen, plan))
    key = s.keys.transplant(backbone, plan.final, card)

    def make() -> None:
        base = checkpoints.open_checkpoint(str(s.backbone_dir), chosen.selected)
        bar = s.progress(total=len(base.files), desc="transplant shards")
        write_arm_model(base, s.ctx.experts, transplant.neurons_by_donor(plan.final, s.ctx.cfg.donors()),
                        s.out / "model", readme=card, overwrite=True, progress=bar.update)
        bar.close()

    s.store.step("transplant", key, [s.out / "model"], make)
    return key


def evaluate(s: Shared, chosen: Selection, keys: dict[str, str], dev_rows: list[dict], dev_scores: dict | None
             ) -> Evaluation:
    """The test rollouts of the models the config names (`keys`: the backbone's and the ARM model's), the
    results table, eval.parquet; then the run's scratch space goes."""
    cfg, work, rows, table = s.ctx.cfg, s.out / ".work", list(dev_rows), None
    if cfg.evaluation is not None:
        models = evaluated_models(s, chosen.selected, keys)
        rows += stored_rollouts(s, "test_rollouts", models, suite_runs(cfg, cfg.evaluated, "test"),
                                before=lambda: write_candidates(s, models))
        paths = {m: path for m, (path, _) in models.items()}
        table = results_table(cfg, chosen.selected, paths, rows)
        write_benchmark_results(cfg, rows, s.out)
    if rows:
        eval_results.write_eval(s.out / "eval.parquet", rows)
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


def stored_rollouts(s: Shared, stage: str, models: dict[str, tuple[str, str]], runs: list[SuiteRun],
                    before: Callable[[], None] | None = None) -> list[dict]:
    """The episodes of `models` ({name: (checkpoint dir, weights key)}) on `runs`: rolled out (after `before()`),
    or read back when a resumed run finished them with the same inputs. The same rows in the same order
    either way: they are always read back from the stage's Parquet file."""
    cfg = s.ctx.cfg
    key = s.keys.rollouts({m: k for m, (_, k) in models.items()}, runs, sampling(cfg),
                          cfg.evaluation.engine.model_dump())
    path = s.store.path(f"{stage}.parquet")

    def make() -> None:
        if before:
            before()
        paths = {m: p for m, (p, _) in models.items()}
        bar = s.progress(total=len(models) * count_tasks(runs), desc=stage.replace("_", " "))
        rows = s.rollouts.get().evaluate(paths, runs, sampling(cfg), on_done=lambda done: bar.update(len(done)))
        bar.close()
        eval_results.write_eval(path, rows)

    s.store.step(stage, key, [path], make)
    return eval_results.read_eval(path)


def evaluated_models(s: Shared, selected: str, keys: dict[str, str]) -> dict[str, tuple[str, str]]:
    """{model name: (checkpoint dir, weights key)} of the models the results table asks for."""
    cfg, want, ctx = s.ctx.cfg, s.ctx.cfg.evaluation.models, s.ctx
    models: dict[str, tuple[str, str]] = {}
    if "base" in want:
        models["base"] = (str(ctx.base.path), s.keys.weights["base"])
    if "experts" in want:
        models.update({e: (str(ctx.experts[e].path), s.keys.weights[e]) for e in cfg.expert_names()})
    if "candidates" in want:  # the selected one is the backbone, evaluated once
        models.update({r.name: (str(s.out / ".work" / "candidates" / r.name), s.keys.candidate(r))
                       for r in ctx.recipes if r.name != selected})
    if "backbone" in want or "candidates" in want:
        models["backbone"] = (str(s.backbone_dir), keys["backbone"])
    if "arm" in want:
        models["arm"] = (str(s.out / "model"), keys["arm"])
    return models


def write_candidates(s: Shared, models: dict[str, tuple[str, str]]) -> None:
    """The candidates among `models` (evaluated_models' answer) as checkpoints where it says."""
    for r in s.ctx.recipes:
        if r.name in models:  # no candidate takes another model's name (config check)
            s.tracing.get().write_candidate(r, models[r.name][0], s.ctx.cfg.max_shard_size, None, overwrite=True)


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
    units = metrics.units(cfg.evaluated, cfg.aggregate_of)  # an aggregate (τ-bench's retail + airline) counts once
    table, table_md = metrics.table(metrics.scores(summary), table_rows(cfg, selected, models), cfg.expert_names(),
                                    cfg.evaluated, units)
    state = {"split": "test", "tasks_per_benchmark": cfg.evaluation.test_tasks, "benchmarks": cfg.evaluated,
             "sampling": sampling(cfg), "models": models, "summary": summary, "table": table,
             "table_md": table_md, "rates_md": metrics.rates_table(summary, list(models), cfg.evaluated),
             "pass_k_md": metrics.pass_k_table(summary, list(models), cfg.evaluated),
             "notes": benchmark_notes(cfg),
             "units": units,
             "intervals": intervals.model_intervals(rows, list(models), cfg.evaluated, seed=cfg.seed, groups=units)}
    if "arm" in models and "backbone" in models:
        # WS's difference on the backbone's worst suite on dev, fixed before test (None: dev lacks a suite)
        worst = intervals.worst_suite(rows, "backbone", cfg.evaluated, groups=units)
        state["paired"] = {"a": "arm", "b": "backbone",
                           "difference": intervals.paired_difference(rows, "arm", "backbone", cfg.evaluated,
                                                                     seed=cfg.seed, worst=worst, groups=units)}
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
    """Where a backend's actors ran (Ray backends say; one in this process, or none made, adds nothing)."""
    return backend.placement() if hasattr(backend, "placement") else []


class Lazy:
    """A backend, made on first use (`value` stays None when nothing needed it)."""

    def __init__(self, factory, *args):
        self.factory, self.args, self.value = factory, args, None

    def get(self):
        if self.value is None:
            self.value = self.factory(*self.args)
        return self.value
