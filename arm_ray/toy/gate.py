"""The merge-friendly pool's gate, read from an ARM run on it (`scripts/make_toy_pool.py` prints it).

A pool is in the paper's regime when merging keeps part of each skill:

    expert      each in-domain expert >= 0.5 on its own benchmark and >= 0.2 above the base there (test)
    retention   R(c) = mean over in-domain b of score(c, b) / score(expert_b, b) (test):
                >= 0.5 for the best operator, >= 0.3 for at least three operators
    ood         the base scores > 0 on every out-of-domain benchmark, so retention there can be measured
    headroom    the AOS-selected backbone trails the donor expert by >= 0.1 on dev on at least one benchmark,
                so there is something to transplant
Pure functions of score tables: {model: {benchmark: score}}.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class Check:
    name: str
    passed: bool
    measured: str
    wanted: str


def retention(scores: dict[str, dict[str, float]], candidate: str, donors: dict[str, str]) -> float:
    """Mean over in-domain benchmarks of score(candidate, b) / score(donor of b, b); a donor at 0 has nothing
    to retain and is left out (an error when every donor is at 0)."""
    ratios = [scores[candidate][b] / scores[e][b] for b, e in donors.items() if scores[e][b] > 0]
    if not ratios:
        raise ValueError("every expert scores 0 on its own benchmark: retention is undefined")
    return sum(ratios) / len(ratios)


def check(test: dict[str, dict[str, float]], dev: dict[str, dict[str, float]], donors: dict[str, str],
          candidates: list[str], backbone: str, out_of_domain: list[str], base: str = "base",
          min_expert: float = 0.5, min_margin: float = 0.2, best_retention: float = 0.5,
          some_retention: float = 0.3, n_some: int = 3, min_headroom: float = 0.1) -> list[Check]:
    """Each gate criterion with what was measured. `donors`: in-domain benchmark -> expert;
    `test`/`dev`: scores on those splits; `backbone`: the model name of the selected backbone in `dev`."""
    checks = []
    for b, e in donors.items():
        mine, theirs = test[e][b], test[base][b]
        checks.append(Check(f"{e} on {b}", mine >= min_expert and mine - theirs >= min_margin,
                            f"{mine:.2f} (base {theirs:.2f})", f">= {min_expert}, >= base + {min_margin}"))
    kept = {c: retention(test, c, donors) for c in candidates}
    best = max(kept, key=kept.get)
    checks.append(Check("best retention", kept[best] >= best_retention, f"{kept[best]:.2f} ({best})",
                        f">= {best_retention}"))
    enough = [c for c in candidates if kept[c] >= some_retention]
    checks.append(Check(f"operators with retention >= {some_retention}", len(enough) >= n_some,
                        f"{len(enough)} of {len(candidates)} (" + ", ".join(f"{c} {kept[c]:.2f}" for c in candidates)
                        + ")", f">= {n_some}"))
    for b in out_of_domain:
        checks.append(Check(f"base on {b} (out of domain)", test[base][b] > 0, f"{test[base][b]:.2f}", "> 0"))
    gaps = {b: dev[e][b] - dev[backbone][b] for b, e in donors.items()}
    top = max(gaps, key=gaps.get)
    checks.append(Check("backbone trails a donor on dev", gaps[top] >= min_headroom,
                        "; ".join(f"{b} {g:+.2f}" for b, g in gaps.items()), f">= {min_headroom} on one"))
    return checks


def from_report(report: dict) -> list[Check]:
    """The gate from an ARM run's report.json (a run with dev diagnosis and candidates in the results table)."""
    ev = report["evaluation"]
    test = {m: {b: v["score"] for b, v in row.items()} for m, row in ev["summary"].items()}
    donors = {b: report["experts"][b]["name"] for b in report["benchmarks"]}
    names = [c["name"] for c in report["candidates"]]
    test |= {report["selected"]: test["backbone"]}  # the selected candidate is evaluated once, as `backbone`
    ood = [b for b in ev["benchmarks"] if b not in donors]
    return check(test, report["dev_scores"], donors, names, "backbone", ood)


def table(checks: list[Check]) -> str:
    lines = ["| gate | measured | wanted | |", "|---|---|---|---|"]
    lines += [f"| {c.name} | {c.measured} | {c.wanted} | {'pass' if c.passed else '**FAIL**'} |" for c in checks]
    return "\n".join(lines)
