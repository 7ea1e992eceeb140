"""The paper's findings measured on a finished run: the recipe `python -m arm_ray.analyze RUN_DIR` runs (its command
line is `arm_ray/analyze.py`; this module takes tracing and rollout backends and knows nothing of Ray).

Writes RUN_DIR/analysis/ (analysis.md, analysis.json, one PNG per finding), atomically:
  1. AOS predicts quality: mean AOS against test AVG over the candidates (Pearson, Spearman, intervals);
  2. role-conditioned tracing separates benchmarks: cross-benchmark overlap, each benchmark's role vs `response`;
  3. protection flattens the k-curve: ARM with and without protection over k (transplant and rollouts only);
  4. ARM raises the worst suite: WS of ARM against the backbone, paired by task, in and out of domain;
  5. role-agnostic ablation: selection and transplant driven by `response`;
  6. how much calibration data is enough: subsets of the calibration set (this one traces again).
Findings 1, 2 and 4 read the run's stored saliency and eval rows; 3 and 5 build models and roll them out on the
run's rollout actors; 6 traces every model once more on the run's tracer actors.
"""

from __future__ import annotations

import json
import logging
import shutil
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, field_validator

from arm_ray import atomic, checkpoints, pipeline, selection, transplant
from arm_ray.analysis import findings, plots
from arm_ray.analysis.markdown import markdown
from arm_ray.arm_model import write_arm_model
from arm_ray.config import RunConfig
from arm_ray.errors import ConfigError
from arm_ray.evaluation import intervals, metrics
from arm_ray.rollout import results as eval_results
from arm_ray.saliency import pack_trajectories, read_saliency
from arm_ray.stages import STORE
from arm_ray.tracing import TraceJob

log = logging.getLogger("arm_ray.analyze")
ALL = (1, 2, 3, 4, 5, 6)


class Options(BaseModel):
    """What to measure, and how finely."""
    model_config = ConfigDict(extra="forbid")

    findings: list[int] = Field(list(ALL), description="which findings (1-6)")
    ks: list[float] = Field([0.01, 0.02, 0.05, 0.1, 0.2], description="k values of the protection sweep (3)")
    sizes: list[int] = Field([2, 4, 8, 16], description="trajectories per benchmark (6); the full set is added")
    seeds: int = Field(3, gt=0, description="sampling seeds per calibration size (6)")
    n_boot: int = Field(2000, gt=0, description="bootstrap resamples of every interval")

    @field_validator("findings")
    @classmethod
    def _known(cls, v):
        bad = [f for f in v if f not in ALL]
        if bad or not v:
            raise ValueError(f"findings {bad or v}: expected numbers among {list(ALL)}")
        return sorted(set(v))

    @field_validator("ks")
    @classmethod
    def _ks(cls, v):
        if not v or any(not 0 < k <= 1 for k in v):
            raise ValueError(f"ks {v}: expected fractions in (0, 1]")
        return sorted(set(v))

    @field_validator("sizes")
    @classmethod
    def _sizes(cls, v):
        if any(n < 1 for n in v):
            raise ValueError(f"sizes {v}: expected positive counts of trajectories")
        return sorted(set(v))


# -- what a run directory holds -----------------------------------------------------------------------------

@dataclass
class Run:
    dir: Path
    cfg: RunConfig
    report: dict
    saliency: dict  # (model, benchmark, role) -> s [L, d_ff]
    rows: list[dict]  # eval.parquet

    @property
    def experts(self) -> dict[str, str]:  # in-domain benchmark -> its expert
        return {b: self.cfg.benchmarks[b].expert for b in self.cfg.in_domain}

    @property
    def roles(self) -> dict[str, str]:
        return {b: self.cfg.role_of(b) for b in self.cfg.in_domain}

    @property
    def candidates(self) -> list[str]:
        return [c["name"] for c in self.report["candidates"]]

    @property
    def out_of_domain(self) -> list[str]:
        return [b for b in self.cfg.evaluated if b not in self.cfg.in_domain]

    def final(self) -> dict[str, np.ndarray]:
        """The run's T_b as masks (report.json lists the moved neurons)."""
        shape = next(iter(self.saliency.values())).shape
        out = {}
        for b, pairs in self.report["transplanted"].items():
            m = np.zeros(shape, dtype=bool)
            for layer, j in pairs:
                m[layer, j] = True
            out[b] = m
        return out


def load_run(run_dir: Path) -> Run:
    """The run's files, each checked: a missing or unfinished one is named before any work."""
    if not run_dir.is_dir():
        raise ConfigError(f"{run_dir}: no such run directory")
    need = ("report.json", "run_config.json", "saliency.parquet")
    missing = [n for n in need if not (run_dir / n).is_file()]
    if missing:
        hint = (" (runs made before arm_ray.analyze existed have no run_config.json: run it again with --resume)"
                if missing == ["run_config.json"] else "; is the run finished?")
        raise ConfigError(f"{run_dir}: missing {', '.join(missing)}{hint}")
    try:
        report = json.loads((run_dir / "report.json").read_text())
    except json.JSONDecodeError as e:
        raise ConfigError(f"{run_dir / 'report.json'}:{e.lineno}: not valid JSON ({e.msg})") from None
    rows = eval_results.read_eval(run_dir / "eval.parquet") if (run_dir / "eval.parquet").is_file() else []
    return Run(run_dir, run_config(run_dir), report, read_saliency(run_dir / "saliency.parquet"), rows)


def run_config(run_dir: Path) -> RunConfig:
    """The config the run in `run_dir` ran with (its run_config.json)."""
    try:
        return RunConfig.model_validate_json((run_dir / "run_config.json").read_text())
    except ValueError as e:
        raise ConfigError(f"{run_dir / 'run_config.json'}: not a run config: {e}") from None


def check(run: Run, opts: Options) -> None:
    """What each asked finding needs from the run, before anything heavy starts."""
    cfg, want = run.cfg, set(opts.findings)
    tested = {r["model"] for r in run.rows if r["split"] == "test"}
    needs = []
    if 1 in want and not ({c for c in run.candidates if c != run.report["selected"]} | {"backbone"}) <= tested:
        needs.append("finding 1 needs test rollouts of every candidate (evaluation.models: [candidates, ...])")
    if len(run.candidates) < 3 and 1 in want:
        needs.append(f"finding 1 needs at least 3 candidates; the run has {len(run.candidates)}")
    if want & {3, 4, 5, 6} and not {"arm", "backbone"} <= tested:
        needs.append("findings 3-6 compare with the run's ARM and backbone: evaluation.models needs backbone and arm")
    if want & {2, 5} and "response" not in [*run.roles.values(), *cfg.calibration.extra_roles]:
        needs.append("findings 2 and 5 need the role-agnostic saliency: calibration.extra_roles: [response]")
    if want & {2} and len(cfg.in_domain) < 2:
        needs.append("finding 2 needs at least two in-domain benchmarks")
    if needs:
        raise ConfigError(f"{run.dir}: cannot analyze this run as asked: " + "; ".join(needs)
                          + f" (or leave those out with --findings; asked {opts.findings})")


# -- building and rolling out the analysis's models ---------------------------------------------------------

@dataclass(frozen=True)
class Spec:
    """A model to evaluate: `backbone` (a candidate's name) with the neurons of `final` moved in, or, with
    `final` None, the candidate itself."""
    backbone: str
    final: tuple = ()  # ((benchmark, mask bytes), ...): hashable, so equal models are rolled out once
    shape: tuple = ()

    @staticmethod
    def of(backbone: str, final: dict[str, np.ndarray] | None) -> "Spec":
        if final is None:
            return Spec(backbone, None)
        items = tuple(sorted((b, np.packbits(m).tobytes()) for b, m in final.items() if m.any()))
        shape = next(iter(final.values())).shape if final else ()
        return Spec(backbone, items, shape)

    def masks(self) -> dict[str, np.ndarray]:
        n = int(np.prod(self.shape))
        return {b: np.unpackbits(np.frombuffer(raw, np.uint8))[:n].reshape(self.shape).astype(bool)
                for b, raw in self.final}


@dataclass
class Lab:
    """The analysis's side of the run's actors: it writes models, rolls them out, traces, and counts traces."""
    run: Run
    ctx: object  # prepare.Context
    tracing: pipeline.Lazy
    rollouts: pipeline.Lazy
    progress: Callable
    work: Path
    traces: int = 0
    rollout_episodes: int = 0
    written: dict = field(default_factory=dict)  # candidate name -> checkpoint dir
    weak_cache: dict = field(default_factory=dict)  # candidate name -> its weak benchmarks as a backbone

    def candidate_dir(self, name: str) -> str:
        """A candidate on disk: the run's backbone, or built again on a tracer actor (no trace)."""
        if name == self.run.report["selected"] and (self.run.dir / "backbone").is_dir():
            return str(self.run.dir / "backbone")
        if name not in self.written:
            recipe = next(r for r in self.ctx.recipes if r.name == name)
            path = self.work / "candidates" / name
            self.tracing.get().write_candidate(recipe, str(path), self.run.cfg.max_shard_size, None, overwrite=True)
            self.written[name] = str(path)
        return self.written[name]

    def reused(self, spec: Spec) -> str | None:
        """The run's own model that `spec` is, when it is one: its rows need no rollout."""
        if spec.backbone != self.run.report["selected"]:
            return None
        if spec.final is None or not spec.final:
            return "backbone"
        return "arm" if spec == Spec.of(spec.backbone, self.run.final()) else None

    def write(self, spec: Spec, name: str) -> str:
        base = checkpoints.open_checkpoint(self.candidate_dir(spec.backbone), spec.backbone)
        if spec.final is None:
            return str(base.path)
        out = self.work / "models" / name
        write_arm_model(base, self.ctx.experts, transplant.neurons_by_donor(spec.masks(), self.run.cfg.donors()),
                        out, overwrite=True)
        return str(out)

    def evaluate(self, specs: dict[str, Spec], benchmarks: list[str], split: str = "test") -> list[dict]:
        """Rows of every named model on `benchmarks`: the run's rows for its own models, one rollout for each
        distinct other model (equal specs share it), under the run's sampling and engine."""
        cfg, rows, todo = self.run.cfg, [], {}
        first_of: dict[Spec, str] = {}
        for name, spec in specs.items():
            own = self.reused(spec) if split == "test" else None
            if own is not None:
                rows += [{**r, "model": name} for r in self.run.rows
                         if r["model"] == own and r["split"] == split and r["benchmark"] in benchmarks]
            elif spec in first_of:
                continue
            else:
                first_of[spec] = name
        for spec, name in first_of.items():
            todo[name] = self.write(spec, name)
        if todo:
            runs = pipeline.suite_runs(cfg, benchmarks, split)
            sampling = {b: cfg.sampling_of(b).model_dump() for b in benchmarks}
            from arm_ray.rollout.run import count_tasks

            bar = self.progress(total=len(todo) * count_tasks(runs), desc=f"analysis {split} rollouts")
            got = self.rollouts.get().evaluate(todo, runs, sampling, on_done=lambda done: bar.update(len(done)))
            bar.close()
            self.rollout_episodes += len(got)
            rows += got
            for name, spec in specs.items():  # equal specs: the first one's rows under each name
                if spec in first_of and first_of[spec] != name:
                    rows += [{**r, "model": name} for r in got if r["model"] == first_of[spec]]
        return rows

    def weak_for(self, candidate: str) -> list[dict]:
        """The weak benchmarks with `candidate` as the backbone: the run's own list for its backbone, else as the
        run decides them (dev rollouts of that candidate when the run used them; cached per candidate)."""
        run, cfg = self.run, self.run.cfg
        if candidate == run.report["selected"]:
            return run.report["weak"]
        if candidate not in self.weak_cache:
            if cfg.weak.from_rollouts:
                name = f"{candidate}_as_backbone"
                dev = self.evaluate({name: Spec.of(candidate, None)}, cfg.in_domain, "dev")
                dev_scores = {**run.report.get("dev_scores", {}), **metrics.scores(metrics.summarize(dev, "dev"))}
                self.weak_cache[candidate] = pipeline.weak_benchmarks(cfg, name, dev_scores, "dev")
            else:
                self.weak_cache[candidate] = pipeline.weak_benchmarks(cfg, candidate, self.ctx.dev_scores)
        return self.weak_cache[candidate]

    def trace(self, jobs: list[TraceJob], packed: dict) -> dict:
        self.traces += len(jobs)
        bar = self.progress(total=len(jobs), desc="analysis traces")
        results = self.tracing.get().trace(jobs, packed, on_done=lambda r: bar.update(1))
        bar.close()
        return {r.model: r for r in results}


# -- the analysis, top to bottom ----------------------------------------------------------------------------

def analyze(run_dir: Path, opts: Options, tracing_factory: Callable, rollouts_factory: Callable | None,
            progress=None) -> dict:
    """Measure the findings `opts` asks on the run in `run_dir`; writes run_dir/analysis and returns
    analysis.json's content. The backends are made on first use, as in `pipeline.run`."""
    from tqdm.auto import tqdm

    from arm_ray.prepare import prepare

    run_dir = Path(run_dir)
    run = load_run(run_dir)
    check(run, opts)
    clock = pipeline.Stopwatch()
    with stage(clock, "prepare"):
        ctx = prepare(run.cfg)
    cfg, rep, want = run.cfg, run.report, set(opts.findings)
    lab = Lab(run, ctx, pipeline.Lazy(tracing_factory, ctx), pipeline.Lazy(rollouts_factory, cfg),
              progress or tqdm, run_dir / ".work" / "analysis")
    if any(r.aim is not None for r in ctx.recipes):  # AIM candidates read the base importance the run measured
        stored = run_dir / STORE / pipeline.IMPORTANCE
        if not stored.is_file():  # a run from before AIM was stored, or a damaged store: measured again
            stored = lab.work / pipeline.IMPORTANCE
            stored.parent.mkdir(parents=True, exist_ok=True)
            lab.tracing.get().importance(ctx.packed, str(stored))
        pipeline.attach_importance(ctx, stored)
    selected, k, seed = rep["selected"], cfg.k, cfg.seed
    out: dict = {"run": str(run_dir), "name": cfg.name, "k": k, "selected": selected, "findings": {}}
    f = out["findings"]
    if 1 in want:
        with stage(clock, "1 AOS vs quality"):
            cands = [{"name": c["name"], "mean_aos": c["mean_aos"],
                      "eval_model": "backbone" if c["name"] == selected else c["name"]} for c in rep["candidates"]]
            f["aos_vs_quality"] = findings.aos_vs_quality(cands, run.rows, cfg.evaluated, opts.n_boot, seed,
                                                          metrics.units(cfg.evaluated, cfg.aggregate_of))
    if 2 in want:
        with stage(clock, "2 role overlap"):
            f["role_overlap"] = findings.role_overlap(run.saliency, run.experts, run.roles, k, selected)
    if 4 in want:
        with stage(clock, "4 ARM vs backbone"):
            f["arm_vs_backbone"] = findings.arm_vs_backbone(run.rows, cfg.in_domain, run.out_of_domain,
                                                            opts.n_boot, seed,
                                                            lambda bs: metrics.units(bs, cfg.aggregate_of))
            f["arm_vs_backbone"]["weak"] = [w["benchmark"] for w in rep["weak"]]
    specs: dict[str, Spec] = {}
    if 3 in want:
        with stage(clock, "3 plan"):
            sweep = findings.sweep_sets(run.saliency, run.experts, run.roles, selected, rep["weak"],
                                        cfg.donors(), cfg.conflict_policy, opts.ks)
            specs |= {sweep_name(kk, p): Spec.of(selected, m) for (kk, p), m in sweep.items()}
    if 5 in want:
        with stage(clock, "5 plan"):
            ablation = role_agnostic(lab, opts)
            specs |= {"response_arm": ablation.pop("spec")}
            if ablation["selected"] != selected:
                specs["response_backbone"] = Spec.of(ablation["selected"], None)
    if specs:
        with stage(clock, "3+5 rollouts"):
            rows = lab.evaluate(specs, cfg.evaluated)
    if 3 in want:
        with stage(clock, "3 k-sweep"):
            units = metrics.units(cfg.in_domain, cfg.aggregate_of)
            f["protection_sweep"] = sweep_result(sweep, rows, cfg.in_domain, opts, seed,
                                                 intervals.worst_suite(run.rows, "backbone", cfg.in_domain,
                                                                       groups=units), units)
            f["protection_sweep"]["traces"] = lab.traces  # models traced so far: none, the saliency is stored
    if 5 in want:
        with stage(clock, "5 role-agnostic"):
            f["role_agnostic"] = role_agnostic_result(ablation, run, rows, opts, seed)
    if 6 in want:
        with stage(clock, "6 calibration size"):
            f["calibration_size"] = calibration_size(lab, opts)
    out["timings"] = clock.timings
    out["traces"] = lab.traces
    out["rollout_episodes"] = lab.rollout_episodes
    write(run_dir / "analysis", out)
    shutil.rmtree(lab.work, ignore_errors=True)
    return out


@contextmanager
def stage(clock: pipeline.Stopwatch, name: str):
    """A timed stage of the analysis, its time printed as it ends."""
    with clock(name):
        yield
    log.info(f"analysis stage {name}: {clock.timings[name]:.1f} s")


def sweep_name(k: float, protect: bool) -> str:
    return f"k{k:g}_{'protected' if protect else 'unprotected'}"


def sweep_result(sweep: dict, rows: list[dict], bench: list[str], opts: Options, seed: int,
                 worst: str | None = None, groups: dict[str, list[str]] | None = None) -> dict:
    """Each (k, protection) point's in-domain AVG and WS, and protected - unprotected paired by task (WS's on
    `worst`, the run backbone's worst suite on dev)."""
    points = []
    for (k, protect), final in sorted(sweep.items()):
        s = findings.score(rows, sweep_name(k, protect), bench, opts.n_boot, seed, groups)
        points.append({"k": k, "protect": protect, "moved": findings.moved(final), **s})
    diff = {f"{k:g}": intervals.paired_difference(rows, sweep_name(k, True), sweep_name(k, False), bench,
                                                  n_boot=opts.n_boot, seed=seed, worst=worst, groups=groups)
            for k in opts.ks}
    return {"benchmarks": bench, "ks": opts.ks, "points": points, "protected_minus_unprotected": diff}


def role_agnostic(lab: Lab, opts: Options) -> dict:
    """Selection by `response`; the weak benchmarks of that backbone (dev rollouts when the run used them);
    T_b from `response` sets. Returns the plan and the Spec of its ARM model."""
    run, cfg = lab.run, lab.run.cfg
    sel = findings.role_agnostic_selection(run.saliency, run.experts, run.candidates, cfg.k,
                                           metrics.units(cfg.in_domain, cfg.aggregate_of))
    chosen = sel["selected"]
    weak = lab.weak_for(chosen)
    final = findings.arm_sets(sel["expert_sets"], sel["candidate_sets"][chosen], weak, cfg.donors(),
                              cfg.conflict_policy)
    return {"selected": chosen, "aos": sel["aos"], "weak": weak, "final": final, "spec": Spec.of(chosen, final)}


def role_agnostic_result(ablation: dict, run: Run, rows: list[dict], opts: Options, seed: int) -> dict:
    bench, cfg = run.cfg.evaluated, run.cfg
    units = metrics.units(bench, cfg.aggregate_of)
    worst = intervals.worst_suite(run.rows, "backbone", bench, groups=units)
    in_units = metrics.units(cfg.in_domain, cfg.aggregate_of)
    mean_aos = {c: selection.mean_aos(v, in_units) for c, v in ablation["aos"].items()}
    res = {"selected": ablation["selected"], "run_selected": run.report["selected"],
           "mean_aos": mean_aos, "weak": [w["benchmark"] for w in ablation["weak"]],
           "moved": findings.moved(ablation["final"]), "run_moved": findings.moved(run.final()),
           "sets": findings.compare_sets(ablation["final"], run.final()),
           "arm": findings.score(rows, "response_arm", bench, opts.n_boot, seed, units),
           "role_arm": findings.score(run.rows, "arm", bench, opts.n_boot, seed, units),
           "difference": intervals.paired_difference(rows + run.rows, "response_arm", "arm", bench,
                                                     n_boot=opts.n_boot, seed=seed, worst=worst, groups=units),
           "benchmarks": bench, "in_domain": cfg.in_domain}
    if ablation["selected"] != run.report["selected"]:
        res["backbone"] = findings.score(rows, "response_backbone", bench, opts.n_boot, seed, units)
    return res


def calibration_size(lab: Lab, opts: Options) -> dict:
    """Trace every expert and candidate once with one group per calibration trajectory, then, for each size and
    seed, the sets, choice and T_b of a random subset. The ARM model of the smallest size that keeps the choice
    for every seed (or, when none does, whose choices are none measurably worse on test AVG than the full
    choice, paired by task) is
    built and rolled out. A subset that picks another backbone gets that backbone's own weak benchmarks."""
    import time

    from arm_ray.prepare import encode_benchmarks

    run, cfg, ctx = lab.run, lab.run.cfg, lab.ctx
    encoded, _ = encode_benchmarks(cfg, ctx.base)
    packed, groups = {}, {}
    for b, encs in encoded.items():
        role = cfg.role_of(b)
        mine = [replace(e, benchmark=f"{b}#{i}") for i, e in enumerate(encs)]
        groups[b] = [(f"{b}#{i}", role) for i in range(len(encs))]
        packed[b] = pack_trajectories(mine, groups[b], cfg.trace.max_tokens_per_batch)
    jobs = pipeline.trace_jobs(ctx)
    t0 = time.perf_counter()
    per_traj = lab.trace(jobs, packed)
    trace_s = time.perf_counter() - t0
    args = (run.experts, run.candidates, lab.weak_for, cfg.donors(), cfg.conflict_policy, cfg.k,
            metrics.units(cfg.in_domain, cfg.aggregate_of))
    full = findings.calibration_point(per_traj, groups, *args)
    # the per-trajectory sums over all trajectories give back the run's own saliency (a check of the method)
    drift = max(float(np.max(np.abs(findings.subset_saliency(per_traj[c], [per_traj[c].groups.index(g)
                                                                              for g in groups[b]])
                                    - run.saliency[(c, b, cfg.role_of(b))])))
                for c in run.candidates for b in cfg.in_domain)
    sizes = [n for n in opts.sizes if n < min(len(g) for g in groups.values())]
    points = []
    for n in sizes:
        for s in range(opts.seeds):
            sub = {b: [groups[b][i] for i in findings.draw(len(groups[b]), n, s, j)]
                   for j, b in enumerate(groups)}
            p = findings.calibration_point(per_traj, sub, *args)
            points.append({"n": n, "seed": s, **findings.calibration_change(p, full), "weak": p["weak"],
                           "final": p["final"]})
    avg = candidate_avgs(run, opts.n_boot)
    full_ci = avg.get(full["selected"])
    versus = {}  # candidate -> its test AVG minus the full choice's, paired by task
    for p in points:
        c = p["selected"]
        p["selected_avg"] = avg[c][0] if c in avg else None
        if c not in versus and c in avg and full_ci is not None:
            versus[c] = candidate_difference(run, c, full["selected"], opts.n_boot)
        p["minus_full_choice"] = versus.get(c)
        # equally good: the paired difference to the full data's choice is not measurably below 0
        p["equivalent"] = p["minus_full_choice"] is not None and p["minus_full_choice"][2] >= 0
    smallest = from_on(sizes, points, "same_choice")  # every seed at this size and above keeps the choice
    equivalent = from_on(sizes, points, "equivalent")  # ... picks a candidate not measurably worse (paired)
    result = {"sizes": sizes, "seeds": opts.seeds, "available": {b: len(g) for b, g in groups.items()},
              "full_selected": full["selected"], "full_selected_avg": full_ci, "traces": len(jobs),
              "trace_seconds": round(trace_s, 1), "max_abs_diff_to_run_saliency": drift,
              "smallest_keeping_choice": smallest, "smallest_equivalent_choice": equivalent,
              "points": [{k: v for k, v in p.items() if k != "final"} for p in points]}
    n = smallest if smallest is not None else equivalent
    if n is not None and run.report["weak"]:
        point = next(p for p in points if p["n"] == n and p["seed"] == 0)
        name, units = f"calibration_n{n}_arm", metrics.units(cfg.evaluated, cfg.aggregate_of)
        rows = lab.evaluate({name: Spec.of(point["selected"], point["final"])}, cfg.evaluated)
        rows += [r for r in run.rows if r["model"] == "arm" and r["split"] == "test"]
        result["smallest_arm"] = {"model": name, "n": n, "backbone": point["selected"],
                                  "basis": "same choice" if n == smallest else "equivalent choice",
                                  **findings.score(rows, name, cfg.evaluated, opts.n_boot, cfg.seed, units),
                                  "difference": intervals.paired_difference(
                                      rows, name, "arm", cfg.evaluated, n_boot=opts.n_boot, seed=cfg.seed,
                                      worst=intervals.worst_suite(run.rows, "backbone", cfg.evaluated, groups=units),
                                      groups=units)}
    return result


def from_on(sizes: list[int], points: list[dict], key: str) -> int | None:
    """The smallest size from which on every seed of every larger size has `key` true."""
    smallest = None
    for n in reversed(sizes):
        if not all(p[key] for p in points if p["n"] == n):
            break
        smallest = n
    return smallest


def candidate_model(run: Run, candidate: str) -> str:
    """The eval rows' name of a candidate: the selected one was rolled out as `backbone`."""
    return "backbone" if candidate == run.report["selected"] else candidate


def candidate_avgs(run: Run, n_boot: int) -> dict[str, list[float]]:
    """Each candidate's test AVG [estimate, low, high] from the run's rows (those it rolled out)."""
    tested = {r["model"] for r in run.rows if r["split"] == "test"}
    out, units = {}, metrics.units(run.cfg.evaluated, run.cfg.aggregate_of)
    for c in run.candidates:
        model = candidate_model(run, c)
        if model in tested:
            out[c] = intervals.model_intervals(run.rows, [model], run.cfg.evaluated, n_boot=n_boot,
                                               seed=run.cfg.seed, groups=units)[model]["AVG"]
    return out


def candidate_difference(run: Run, a: str, b: str, n_boot: int) -> list[float]:
    """Test AVG of candidate a minus candidate b, paired by task: [estimate, low, high] ([0, 0, 0] for a == b)."""
    if a == b:
        return [0.0, 0.0, 0.0]
    return intervals.paired_difference(run.rows, candidate_model(run, a), candidate_model(run, b),
                                       run.cfg.evaluated, n_boot=n_boot, seed=run.cfg.seed,
                                       groups=metrics.units(run.cfg.evaluated, run.cfg.aggregate_of))["AVG"]


def write(out: Path, state: dict) -> None:
    """analysis.json, analysis.md and the plots, all appearing at once."""
    with atomic.atomic_dir(out, overwrite=True) as tmp:
        (tmp / "analysis.json").write_text(json.dumps(state, indent=2, default=_plain))
        state["plots"] = plots.write_all(tmp, state)
        (tmp / "analysis.md").write_text(markdown(state))


def _plain(o):
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, (np.integer, np.floating, np.bool_)):
        return o.item()
    raise TypeError(f"{type(o).__name__} is not JSON")
