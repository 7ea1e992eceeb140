"""A config on several builds of its pool: one config per build seed, and the headline numbers with their
spread over builds (`scripts/over_builds.py` runs them).

A pool is one draw: its experts' SFT batches (and the run's sampling) come from a seed, and a number read from
one build says nothing about the next. `build_config` moves every path under the pool's directory
(`prepare.args.out`) to `<out>_s<seed>`; `headline` reads what one run's report.json contributes; `summary_md`
states each number per build and as mean [min, max] over builds.
"""

from __future__ import annotations

import copy
import statistics

from arm_ray.evaluation.metrics import BEST


def _moved(value, old: str, new: str):
    """`value` with every string that is `old` or a path under it moved under `new` (lists and dicts walked)."""
    if isinstance(value, dict):
        return {k: _moved(v, old, new) for k, v in value.items()}
    if isinstance(value, list):
        return [_moved(v, old, new) for v in value]
    if isinstance(value, str) and (value == old or value.startswith(old + "/")):
        return new + value[len(old):]
    return value


def build_config(cfg: dict, seed: int, full: bool) -> dict:
    """The config for one build: every path under the pool's directory moved to `<out>_s<seed>`, the build's
    seed given to the pool and the run. Without `full`, candidates other than the backbone are not evaluated on
    test and the role-agnostic traces (`calibration.extra_roles`) are skipped."""
    old = cfg["prepare"]["args"]["out"].rstrip("/")
    out = _moved(copy.deepcopy(cfg), old, f"{old}_s{seed}")
    out["prepare"]["args"]["seed"] = seed
    out["seed"] = seed
    out["name"] = f"{cfg['name']}_s{seed}"
    if not full:
        out["evaluation"]["models"] = [m for m in out["evaluation"]["models"] if m != "candidates"]
        out["calibration"].pop("extra_roles", None)
    return out


def headline(report: dict, cfg: dict) -> dict:
    """The numbers one build contributes: scores in [0, 1] and the paired ARM - backbone interval."""
    ev = report["evaluation"]
    rows = {r["model"]: r for r in ev["table"]}
    own = {spec["expert"]: b for b, spec in cfg["benchmarks"].items() if spec.get("expert")}
    out = {"selected": report["selected"], "base": rows["base"]["AVG"], "backbone": rows["backbone"]["AVG"],
           "arm": rows["arm"]["AVG"], "arm_minus_backbone": ev["paired"]["difference"]["AVG"],
           "experts_own": {e: rows[e][b] for e, b in own.items() if e in rows}}
    candidates = [r for r in ev["table"] if r["model"] not in ("base", "backbone", "arm", BEST, *cfg["experts"])]
    candidates += [rows["backbone"]]
    if len(candidates) > 1:
        best = max(candidates, key=lambda r: r["AVG"])
        out["best_merge"] = {"name": report["selected"] if best["model"] == "backbone" else best["model"],
                             "AVG": best["AVG"]}
    out["per_benchmark"] = {m: {b: rows[m][b] for b in ev["benchmarks"]} for m in ("base", "backbone", "arm")}
    return out


def spread(values: list[float], signed: bool = False) -> str:
    """Percent: mean [min, max] over builds."""
    pct, f = [100 * v for v in values], "+.1f" if signed else ".1f"
    return f"{statistics.fmean(pct):{f}} [{min(pct):{f}}, {max(pct):{f}}]"


def summary_md(name: str, builds: dict[int, dict]) -> str:
    experts = sorted({e for h in builds.values() for e in h["experts_own"]})
    cols = ["base AVG", *[f"{e} (own suite)" for e in experts], "best merge AVG", "backbone AVG", "ARM AVG",
            "ARM - backbone AVG [95 % CI]"]
    lines = [f"# {name} over {len(builds)} builds", "",
             "Scores in percent on the test tasks; AVG over every evaluated benchmark. Each build is one seed "
             "(its experts' SFT order and the run's sampling).", "",
             "| build | selected | " + " | ".join(cols) + " |", "|---|---|" + "---:|" * len(cols)]
    for seed, h in builds.items():
        d = h["arm_minus_backbone"]
        cells = [f"{100 * h['base']:.1f}", *[f"{100 * h['experts_own'][e]:.1f}" for e in experts],
                 f"{100 * h['best_merge']['AVG']:.1f} ({h['best_merge']['name']})" if "best_merge" in h else "n/e",
                 f"{100 * h['backbone']:.1f}", f"{100 * h['arm']:.1f}",
                 f"{100 * d[0]:+.1f} [{100 * d[1]:+.1f}, {100 * d[2]:+.1f}]"]
        lines.append(f"| seed {seed} | {h['selected']} | " + " | ".join(cells) + " |")
    hs = list(builds.values())
    cells = [spread([h["base"] for h in hs]), *[spread([h["experts_own"][e] for h in hs]) for e in experts],
             spread([h["best_merge"]["AVG"] for h in hs if "best_merge" in h]) if any("best_merge" in h for h in hs)
             else "n/e", spread([h["backbone"] for h in hs]), spread([h["arm"] for h in hs]),
             spread([h["arm_minus_backbone"][0] for h in hs], signed=True)]
    lines += ["| mean [min, max] | | " + " | ".join(cells) + " |", "",
              "n/e: not evaluated (only the `--full` build evaluates every candidate on test)."]
    return "\n".join(lines) + "\n"
