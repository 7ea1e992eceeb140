"""report.json, report.md, plots and model cards: what a run did, for tools and for people."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from arm_ray import selection, transplant
from arm_ray.atomic import atomic_write_text
from arm_ray.evaluation import metrics


def build(ctx, traces, chosen, plan, evaluation=None, timings: dict | None = None,
          placement: list[dict] | None = None, stages: dict | None = None) -> dict:
    """report.json's content from the pipeline's stage results (`pipeline.Traces`, `Selection`,
    `TransplantPlan`, `Evaluation`); without the last four arguments, what the model card needs.
    `stages`: which stages ran and which a resumed run reused (`stages.Store.status`)."""
    cfg = ctx.cfg
    bench = cfg.in_domain
    units = metrics.units(bench, cfg.aggregate_of)
    r = {
        "name": cfg.name,
        "k": cfg.k,
        "benchmarks": bench,
        "roles": {b: cfg.role_of(b) for b in bench},
        "experts": {b: {"name": cfg.benchmarks[b].expert, "path": str(ctx.experts[cfg.benchmarks[b].expert].path)}
                    for b in bench},
        "base": {"path": str(ctx.base.path), **({"about": cfg.base.about} if cfg.base.about else {})},
        "candidates": [{"name": c.name, "operator": c.method, "parameters": c.parameters, "aim": c.aim,
                        "aos": chosen.aos[c.name],
                        "mean_aos": selection.mean_aos(chosen.aos[c.name], units)} for c in ctx.recipes],
        "selected": chosen.selected,
        "weak": plan.weak,
        "protect": cfg.protect,
        "conflict_policy": cfg.conflict_policy,
        "transplanted": {b: transplant.mask_to_pairs(m) for b, m in plan.final.items()},
        "transplanted_per_layer": {b: transplant.per_layer_counts(m) for b, m in plan.final.items()},
        "conflicts": transplant.mask_to_pairs(plan.conflicts) if plan.conflicts.size else [],
        "calibration": {b: {"n_trajectories": int(p.n_trajectories[0]), "n_tokens": int(p.n_tokens[0])}
                        for b, p in ctx.packed.items()},
        "traced": [{"model": j.model, "kind": j.kind, "benchmarks": list(j.benchmarks)} for j in traces.jobs],
        "output_model": "model",
        "backbone_model": "backbone" if cfg.save_backbone else None,
    }
    r["warnings"] = list(ctx.warnings)  # also logged: what a reader of the report alone must see too
    if timings is not None:
        r["timings"] = dict(timings)
    if placement:  # which node (and GPUs) each tracer and rollout actor ran on
        r["placement"] = placement
    if stages is not None:  # "computed" or "reused" (from a killed run's stored outputs, with the same inputs)
        r["stages"] = dict(stages)
    if evaluation is not None and evaluation.table is not None:
        r["evaluation"] = evaluation.table
    if evaluation is not None and evaluation.dev_scores is not None:
        r["dev_scores"] = evaluation.dev_scores
    return r


def resumed(r: dict) -> str:
    """The stages a resumed run reused, e.g. "trace reused; backbone reused" ("" when it computed all)."""
    return "; ".join(f"{k} {v}" for k, v in r.get("stages", {}).items() if v != "computed")


def backbone_card(cfg, recipe) -> str:
    return (f"# {cfg.name}: backbone `{recipe.name}`\n\nA candidate of the ARM pool, merged with mergekit "
            f"`{recipe.method}` and parameters `{recipe.parameters}`"
            f"{f' then AIM (omega {recipe.aim:g}, arm_ray.aim)' if recipe.aim is not None else ''} from "
            f"{', '.join(cfg.expert_names())} "
            f"over the base `{cfg.base.path}`.\n")


def model_card(r: dict) -> str:
    moved = sum(len(v) for v in r["transplanted"].values())
    lines = [
        f"# {r['name']}: ARM-merged model",
        "",
        "Merged without training by Agent-Role Merging (ARM, arXiv 2601.07309) with arm-ray.",
        "",
        f"- base: `{r['base']['path']}`" + (f" ({r['base']['about']})" if r["base"].get("about") else ""),
        "- experts: " + ", ".join(f"`{v['name']}` ({b})" for b, v in r["experts"].items()),
        "- pool: " + ", ".join(f"`{c['name']}` ({c['operator']})" for c in r["candidates"]),
        f"- backbone chosen by Activation-Overlap Score: `{r['selected']}`",
        f"- k = {r['k']} (top fraction of MLP neurons per layer)",
        f"- weak benchmarks: {', '.join(w['benchmark'] for w in r['weak']) or 'none'}",
        f"- neurons transplanted: {moved}; conflicts left out: {len(r['conflicts'])}",
        "",
        "The gate/up rows and down columns of the transplanted neurons come from the weak benchmark's expert;",
        "every other weight is the backbone's. The run's report.json lists every neuron moved.",
        "",
    ]
    return "\n".join(lines)


def _gap(gap: float | None) -> str:
    return "—" if gap is None else f"{gap:+.4f}"


def _savefig(fig, path: Path) -> None:
    tmp = path.with_name(f".{path.name}.tmp.png")
    fig.savefig(tmp, dpi=100)
    tmp.replace(path)


def markdown(r: dict) -> str:
    bench = r["benchmarks"]
    out = [f"# ARM run `{r['name']}`", "",
           f"k = {r['k']}; roles: " + ", ".join(f"{b} → `{role}`" for b, role in r["roles"].items()), "",
           "## Activation-Overlap Score (candidates × benchmarks)", "",
           "| candidate | operator | " + " | ".join(bench) + " | mean |",
           "|---|---|" + "---:|" * (len(bench) + 1)]
    for c in r["candidates"]:
        mark = " **(selected)**" if c["name"] == r["selected"] else ""
        out.append(f"| {c['name']}{mark} | {c['operator']} | " + " | ".join(f"{c['aos'][b]:.4f}" for b in bench)
                   + f" | {c['mean_aos']:.4f} |")
    out += ["", f"Selected backbone: **{r['selected']}** (highest mean AOS; ties go to the operator listed first).",
            "", "## Weak benchmarks", ""]
    if r["weak"]:
        out += ["| benchmark | gap | source |", "|---|---:|---|"]
        out += [f"| {w['benchmark']} | {_gap(w['gap'])} | {w['source']} |" for w in r["weak"]]
    else:
        out.append("None: nothing is transplanted; the output model is the backbone.")
    out += ["", "## Neurons transplanted per layer", "",
            f"Protection sets: {'on' if r['protect'] else 'off (unprotected ablation)'}; conflict policy "
            f"`{r['conflict_policy']}`; conflicting neurons: {len(r['conflicts'])}.", ""]
    if r["transplanted"]:
        n_layers = len(next(iter(r["transplanted_per_layer"].values())))
        out += ["| layer | " + " | ".join(r["transplanted_per_layer"]) + " |",
                "|---:|" + "---:|" * len(r["transplanted_per_layer"])]
        for layer in range(n_layers):
            out.append(f"| {layer} | " + " | ".join(str(v[layer]) for v in r["transplanted_per_layer"].values())
                       + " |")
    out += _evaluation_md(r)
    out += ["", "## Calibration", "", "| benchmark | trajectories | role tokens |", "|---|---:|---:|"]
    out += [f"| {b} | {v['n_trajectories']} | {v['n_tokens']} |" for b, v in r["calibration"].items()]
    out += ["", "## Timings (s)", "", "| stage | seconds |", "|---|---:|"]
    out += [f"| {k} | {v:.2f} |" for k, v in r["timings"].items()]
    if resumed(r):
        out += ["", f"Resumed (`--resume`): {resumed(r)} (stored by an earlier run with the same inputs)."]
    out += ["", "![AOS](aos.png)", "", "![transplanted neurons](transplant.png)", ""]
    return "\n".join(out)


def _evaluation_md(r: dict) -> list[str]:
    ev = r.get("evaluation")
    out = []
    if r.get("dev_scores"):
        bench = r["benchmarks"]
        out += ["", "## Dev rollouts (diagnosis)", "", "| model | " + " | ".join(bench) + " |",
                "|---|" + "---:|" * len(bench)]
        for m, row in r["dev_scores"].items():
            out.append(f"| {m} | " + " | ".join(f"{100 * row[b]:.1f}" for b in bench) + " |")
        out += ["", "A benchmark is weak when its expert's dev score exceeds the backbone's by more than the "
                "threshold (gap above)."]
    if not ev:
        return out
    out += ["", f"## Results ({ev['split']}, {_episodes(ev)})", "",
            "Scores in percent; RHM is the harmonic mean of scores normalised by BEST-of-N (the best expert per "
            "benchmark, an oracle selector). In parentheses: relative change against BEST-of-N.", "",
            ev["table_md"], "", "Invalid-action rate (invalid actions / steps), task-limit rate (episodes cut "
            "at the step limit) and error rate (episodes whose environment failed, scored 0):", "", ev["rates_md"],
            "", "Sampling: " + "; ".join(
                f"{b} T={s['temperature']}, top-p={s['top_p']}, max {s['max_new_tokens']} new tokens"
                for b, s in ev["sampling"].items()),
            "", "![results](results.png)"]
    if ev.get("pass_k_md"):
        out += ["", "τ-bench's pass^k (all of k trials of a task succeed), in percent:", "", ev["pass_k_md"]]
    if ev.get("notes"):
        out += [""] + [f"- **{b}**: {note}" for b, note in ev["notes"].items()]
    out += _intervals_md(r)
    return out


def _episodes(ev: dict) -> str:
    """How many episodes each benchmark's scores rest on (a suite's split may hold fewer tasks than asked for,
    and τ² runs each task `trials` times)."""
    counts = {b: max(row[b]["episodes"] for row in ev["summary"].values() if b in row) for b in ev["benchmarks"]}
    if len(set(counts.values())) == 1:
        return f"{next(iter(counts.values()))} episodes per benchmark"
    return "episodes: " + ", ".join(f"{b} {n}" for b, n in counts.items())


def _ci(v: list[float], scale: float = 100.0, sign: bool = False) -> str:
    fmt = "+.1f" if sign else ".1f"
    return f"{scale * v[0]:{fmt}} [{scale * v[1]:{fmt}}, {scale * v[2]:{fmt}}]"


def results_md(r: dict) -> str:
    """The results table, its intervals and the finding: what `python -m arm_ray.main` prints at the end."""
    ev = r["evaluation"]
    notes = [f"note: {b}: {n}" for b, n in ev.get("notes", {}).items()]
    return "\n".join([ev["table_md"], *([ev["pass_k_md"]] if ev.get("pass_k_md") else []), *_intervals_md(r), *notes])


def _intervals_md(r: dict) -> list[str]:
    ev = r["evaluation"]
    if "intervals" not in ev:
        return []
    out = ["", "### 95 % intervals", "", "Bootstrap over tasks (each benchmark's tasks resampled with replacement, "
           "2,000 resamples, fixed seed); points in percent.", "", "| model | AVG [95 % CI] | WS [95 % CI] |",
           "|---|---:|---:|"]
    for row in ev["table"]:
        if row["model"] in ev["intervals"]:
            ci = ev["intervals"][row["model"]]
            out.append(f"| {row['label']} | {_ci(ci['AVG'])} | {_ci(ci['WS'])} |")
    if "paired" not in ev:
        return out
    diff, weak = ev["paired"]["difference"], {w["benchmark"] for w in r["weak"]}
    out += ["", "### ARM − AOS-selected backbone, paired by task", "",
            "The same test tasks for both models, resampled together; points in percent.", "",
            "| | ARM − backbone [95 % CI] | |", "|---|---:|---|"]
    for b in [*ev["benchmarks"], "AVG", "WS"]:
        kind = ("weak: transplanted" if b in weak else "in-domain" if b in r["benchmarks"]
                else "summary" if b in ("AVG", "WS") else "out of domain")
        if b == "WS":
            kind += f": on {diff['WS_suite']}, the backbone's worst suite on dev" if diff.get("WS_suite") else \
                ": WS(ARM) − WS(backbone), conservative bounds (dev does not cover every suite)"
        out.append(f"| {b} | {_ci(diff[b], sign=True)} | {kind} |")
    out += ["", "WS intervals: simultaneous intervals of the suite means, whose minimum the worst suite's "
            "interval bounds (a percentile bootstrap of a minimum under-covers; see arm_ray/evaluation/intervals.py).",
            "", "**Finding.** " + finding(r)]
    return out


def finding(r: dict) -> str:
    """What transplantation did, in plain words, from the paired intervals (an interval that excludes 0 counts)."""
    ev = r["evaluation"]
    diff, scores = ev["paired"]["difference"], ev["summary"]
    weak = [w["benchmark"] for w in r["weak"]]
    unseen = [b for b in weak if b not in diff]  # weak but without a suite: transplanted, never evaluated
    weak = [b for b in weak if b in diff]

    def said(bs: list[str]) -> str:
        return ", ".join(f"{b} {_ci(diff[b], sign=True)}" for b in bs)

    if not weak:
        if unseen:
            return (f"Transplanted into {', '.join(unseen)}, which no suite evaluates; elsewhere ARM - backbone: "
                    f"{said(ev['benchmarks'])} points.")
        return "No benchmark was weak on dev, so nothing was transplanted: ARM is the backbone."
    up = [b for b in weak if diff[b][1] > 0]
    down = [b for b in weak if diff[b][2] < 0]
    if len(up) == len(weak):
        head = f"Transplantation raised every weak benchmark ({said(weak)} points)"
    elif up:
        head = f"Transplantation raised {', '.join(up)} but not measurably the other weak ones ({said(weak)} points)"
    else:
        head = f"Transplantation did not measurably raise the weak benchmarks ({said(weak)} points"
        head += f"; lowered {', '.join(down)})" if down else ")"
    recovered = []
    for b in weak:
        donor = r["experts"][b]["name"]
        gap = scores[donor][b]["score"] - scores["backbone"][b]["score"] if donor in scores else None
        if gap and gap > 0:
            recovered.append(f"{b} {100 * diff[b][0] / gap:.0f} %")
    if recovered:
        head += "; of the test gap to the donor expert it recovered " + ", ".join(recovered)
    others = [b for b in ev["benchmarks"] if b not in weak]
    hurt = [b for b in others if diff[b][2] < 0]
    cost = (f"it cost {said(hurt)} points" if hurt else
            "no other benchmark moved measurably" + (f" ({said(others)})" if others else ""))
    ws_on = f" (on {diff['WS_suite']}, the backbone's worst on dev)" if diff.get("WS_suite") else ""
    return (f"{head}. Elsewhere {cost}. Overall: AVG {_ci(diff['AVG'], sign=True)}, WS {_ci(diff['WS'], sign=True)}"
            f"{ws_on} points.")


def plots(out: Path, r: dict) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    bench, cands = r["benchmarks"], r["candidates"]
    fig, ax = plt.subplots(figsize=(1.6 + 1.2 * len(cands), 3.2))
    width = 0.8 / len(bench)
    for i, b in enumerate(bench):
        ax.bar(np.arange(len(cands)) + i * width, [c["aos"][b] for c in cands], width, label=b)
    ax.set_xticks(np.arange(len(cands)) + width * (len(bench) - 1) / 2, [c["name"] for c in cands])
    ax.set_ylabel("AOS (Jaccard)")
    ax.set_title(f"AOS per candidate; selected: {r['selected']}")
    ax.legend(fontsize=7)
    fig.tight_layout()
    _savefig(fig, out / "aos.png")
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(6, 3))
    per_layer = r["transplanted_per_layer"]
    bottom = None
    for b, counts in per_layer.items():
        ax.bar(range(len(counts)), counts, bottom=bottom, label=b)
        bottom = counts if bottom is None else [x + y for x, y in zip(bottom, counts)]
    if per_layer:
        ax.set_xticks(range(len(next(iter(per_layer.values())))))  # whole layers, not 0.5 steps
    ax.set_xlabel("layer")
    ax.set_ylabel("neurons transplanted")
    ax.set_title("Neurons transplanted per layer" + ("" if per_layer else " (none)"))
    if per_layer:
        ax.legend(fontsize=7)
    fig.tight_layout()
    _savefig(fig, out / "transplant.png")
    plt.close(fig)

    ev = r.get("evaluation")
    if ev:
        rows, bench = ev["table"], ev["benchmarks"]
        fig, ax = plt.subplots(figsize=(4.5 + 1.4 * len(bench), 3.6))
        width = 0.8 / len(rows)
        colors = plt.get_cmap("tab20").colors  # one colour per row: the default cycle repeats after ten
        for i, row in enumerate(rows):
            ax.bar(np.arange(len(bench)) + i * width, [100 * row[b] for b in bench], width, label=row["label"],
                   color=colors[i % len(colors)])
        ax.set_xticks(np.arange(len(bench)) + width * (len(rows) - 1) / 2, bench)
        ax.set_ylabel(f"score on {ev['split']} (%)")
        ax.set_ylim(0, 100)
        ax.set_title(f"Rollout scores per benchmark ({ev['split']}, {_episodes(ev)})")
        ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))  # beside the bars, never over them
        fig.tight_layout()
        _savefig(fig, out / "results.png")
        plt.close(fig)


def write(out: Path, r: dict) -> None:
    """The plots, report.md and report.json, each written atomically (report.json last: it marks a finished run)."""
    plots(out, r)
    atomic_write_text(out / "report.md", markdown(r))
    atomic_write_text(out / "report.json", json.dumps(r, indent=2) + "\n")
