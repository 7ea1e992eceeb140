"""Scores from eval rows, and the paper's summaries (Table 1 and Table 3).

    score(m, b)      mean over benchmark b's tasks of model m's mean reward on the task's trials (the unit the
                     intervals resample; with one trial per task, the mean over episodes)
    BEST-of-N(b)     max over the N experts of score(expert, b): an oracle that picks the right expert
    score(m, u)      of a reported unit u: a benchmark, or an aggregate (config `aggregate:`, e.g. τ-bench's
                     retail and airline) as the mean of its members' scores
    AVG(m)           mean over units of score(m, u)
    WS(m)            min over units of score(m, u)
    RHM(m)           harmonic mean over units of score(m, u) / BEST-of-N(u)
RHM leaves out a unit on which BEST-of-N is 0 (nothing to normalise by)
and is 0 as soon as one normalised score is 0.
"""

from __future__ import annotations

from collections import defaultdict
from math import comb

from arm_ray.world.base import task_of

BEST = "BEST-of-N"


def summarize(rows: list[dict], split: str) -> dict[str, dict[str, dict]]:
    """{model: {benchmark: {score, episodes, invalid_rate, limit_rate, error_rate}}} over one split."""
    groups: dict[tuple[str, str], list[dict]] = defaultdict(list)
    for r in rows:
        if r["split"] == split:
            groups[r["model"], r["benchmark"]].append(r)
    out: dict[str, dict[str, dict]] = defaultdict(dict)
    for (model, bench), eps in groups.items():
        steps = sum(e["steps"] for e in eps)
        trials: dict[str, list[float]] = defaultdict(list)
        for e in eps:
            trials[task_of(e["task_id"])].append(e["reward"])
        out[model][bench] = {
            "score": sum(sum(v) / len(v) for v in trials.values()) / len(trials),
            "episodes": len(eps),
            "tasks": len(trials),
            "invalid_rate": sum(e["invalid_actions"] for e in eps) / steps if steps else 0.0,
            "limit_rate": sum(e["finish_reason"] == "limit" for e in eps) / len(eps),
            "error_rate": sum(e["finish_reason"] == "error" for e in eps) / len(eps),
            "pass^k": pass_hat_k(eps),
        }
    return dict(out)


def pass_hat_k(eps: list[dict]) -> dict[str, float]:
    """τ-bench's pass^k for k = 1 .. the fewest trials of a task: the chance that k trials of a task all
    succeed, C(c, k) / C(n, k) for c successes in n trials, averaged over tasks. Trials of one task share
    its task id up to `#` (`...-7#0`, `...-7#1`)."""
    by_task: dict[str, list[bool]] = defaultdict(list)
    for e in eps:
        by_task[task_of(e["task_id"])].append(e["reward"] >= 1.0)
    n = min(len(v) for v in by_task.values())
    return {str(k): sum(comb(sum(v), k) / comb(len(v), k) for v in by_task.values()) / len(by_task)
            for k in range(1, n + 1)}


def pass_k_table(summary: dict[str, dict[str, dict]], models: list[str], benchmarks: list[str]) -> str:
    """pass^1 .. pass^k per model on the benchmarks run with several trials per task (Markdown; '' if none)."""
    multi = [b for b in benchmarks if any(len(summary[m][b]["pass^k"]) > 1 for m in models)]
    if not multi:
        return ""
    ks = {b: max(len(summary[m][b]["pass^k"]) for m in models) for b in multi}
    head = [f"{b} pass^{k}" for b in multi for k in range(1, ks[b] + 1)]
    lines = ["| model | " + " | ".join(head) + " |", "|---|" + "---:|" * len(head)]
    for m in models:
        cells = [f"{100 * summary[m][b]['pass^k'][str(k)]:.1f}" if str(k) in summary[m][b]["pass^k"] else "n/a"
                 for b in multi for k in range(1, ks[b] + 1)]
        lines.append(f"| {m} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def scores(summary: dict[str, dict[str, dict]]) -> dict[str, dict[str, float]]:
    return {m: {b: v["score"] for b, v in row.items()} for m, row in summary.items()}


def best_of_n(scores: dict[str, dict[str, float]], experts: list[str], benchmarks: list[str]) -> dict[str, float]:
    return {b: max(scores[e][b] for e in experts) for b in benchmarks}


def units(benchmarks: list[str], aggregate_of: dict[str, str] | None = None) -> dict[str, list[str]]:
    """{reported unit: its benchmarks}, in benchmark order: a benchmark is its own unit unless `aggregate_of`
    names its aggregate, whose unit takes the place of its first member."""
    out: dict[str, list[str]] = {}
    for b in benchmarks:
        out.setdefault((aggregate_of or {}).get(b, b), []).append(b)
    return out


def unit_scores(row: dict[str, float], groups: dict[str, list[str]]) -> dict[str, float]:
    return {u: sum(row[b] for b in bs) / len(bs) for u, bs in groups.items()}


def aggregates(row: dict[str, float], best: dict[str, float] | None, benchmarks: list[str],
               groups: dict[str, list[str]] | None = None) -> dict[str, float | None]:
    """AVG, WS and RHM of one row over the units `groups` (default: each benchmark its own); RHM is None
    without BEST-of-N (experts not evaluated)."""
    groups = groups or units(benchmarks)
    row = unit_scores(row, groups)
    best = unit_scores(best, groups) if best else None
    values = list(row.values())
    normalised = [row[u] / best[u] for u in groups if best[u] > 0] if best else []
    if not normalised:
        rhm = None
    elif min(normalised) <= 0:
        rhm = 0.0
    else:
        rhm = len(normalised) / sum(1.0 / x for x in normalised)
    return {"AVG": sum(values) / len(values), "WS": min(values), "RHM": rhm}


def table(scores: dict[str, dict[str, float]], rows: list[tuple[str, str]], experts: list[str],
          benchmarks: list[str], groups: dict[str, list[str]] | None = None) -> tuple[list[dict], str]:
    """The results table. `rows`: (label, model) in display order; the model BEST marks the oracle row.
    `groups`: the reported units (`units`); an aggregate gets a column of its own after the benchmarks.

    Returns the rows as data and as Markdown: scores in percent, each cell of a
    non-oracle row followed by its relative change against the BEST-of-N row
    (when the experts were evaluated; otherwise there is no BEST-of-N and RHM is n/a).
    """
    groups = groups or units(benchmarks)
    joined = [u for u, bs in groups.items() if u not in benchmarks]
    best = best_of_n(scores, experts, benchmarks) if all(e in scores for e in experts) else None
    columns = [*benchmarks, *joined, "AVG", "WS", "RHM"]
    ref = {**best, **unit_scores(best, groups), **aggregates(best, best, benchmarks, groups)} if best else {}
    data, lines = [], ["| model | " + " | ".join(columns) + " |", "|---|" + "---:|" * len(columns)]
    for label, model in rows:
        values = best if model == BEST else scores[model]
        cells = {**{b: values[b] for b in benchmarks},
                 **{u: v for u, v in unit_scores(values, groups).items() if u in joined},
                 **aggregates(values, best, benchmarks, groups)}
        data.append({"label": label, "model": model, **cells})
        text = []
        for c in columns:
            v = cells[c]
            if v is None:
                text.append("n/a")
                continue
            cell = f"{v:.2f}" if c == "RHM" else f"{100 * v:.1f}"
            if model != BEST and ref.get(c):
                cell += f" ({100 * (v - ref[c]) / ref[c]:+.1f}%)"
            text.append(cell)
        lines.append(f"| {label} | " + " | ".join(text) + " |")
    return data, "\n".join(lines)


def rates_table(summary: dict[str, dict[str, dict]], models: list[str], benchmarks: list[str]) -> str:
    """Invalid-action, task-limit and environment-error rates per model and benchmark (Markdown).

    An episode whose environment failed (`finish_reason: error`) scores 0 without the model being at fault:
    the error rate says how much of a score that explains."""
    lines = ["| model | " + " | ".join(f"{b} invalid / limit / error" for b in benchmarks) + " |",
             "|---|" + "---:|" * len(benchmarks)]
    for m in models:
        cells = [f"{100 * summary[m][b]['invalid_rate']:.0f}% / {100 * summary[m][b]['limit_rate']:.0f}% / "
                 f"{100 * summary[m][b]['error_rate']:.0f}%" for b in benchmarks]
        lines.append(f"| {m} | " + " | ".join(cells) + " |")
    return "\n".join(lines)
