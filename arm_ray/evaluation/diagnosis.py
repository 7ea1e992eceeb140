"""Weak benchmarks (ARM_SPEC, step 3): gap_b = score(M_b on dev_b) - score(M0 on dev_b).

A benchmark is weak when its gap exceeds the threshold; `top_m` keeps the m
largest gaps (ties to config order). An explicit list in the config overrides.
"""

from __future__ import annotations


def gaps(dev_scores: dict[str, dict[str, float]], donors: dict[str, str], backbone: str) -> dict[str, float]:
    """{benchmark: expert's dev score - backbone's dev score}; `donors` maps benchmark -> expert."""
    return {b: float(dev_scores[e][b]) - float(dev_scores[backbone][b]) for b, e in donors.items()}


def weak_benchmarks(gap: dict[str, float], threshold: float, top_m: int | None, source: str) -> list[dict]:
    order = list(gap)
    weak = [b for b in order if gap[b] > threshold]
    weak.sort(key=lambda b: (-gap[b], order.index(b)))
    if top_m is not None:
        weak = weak[:top_m]
    weak.sort(key=order.index)
    return [{"benchmark": b, "gap": gap[b], "source": source} for b in weak]
