"""A merge operator of your own: a candidate backbone for the pool, named by a dotted string.

    python -m examples.custom_operator          (from the repository root)

An operator is a function `(experts, base, parameters) -> state dict`:
`experts` maps each expert's name to its state dict, `base` is the base
model's (or None), `parameters` the operator's `parameters:` from the config.
Put it in the pool next to mergekit's methods:

    operators:
      - {name: average, method: linear, parameters: {weight: 1.0}}
      - {name: median, method: examples.custom_operator:task_vector_median, parameters: {scale: 1.0}}

Here: the base plus the element-wise median of the experts' task vectors
(theta_e - theta_base), scaled. Run as a script, it builds the tiny perturbed
pool in a temporary directory, runs ARM on it in this process (the same recipe
the Ray actors run) with this operator in the pool, and prints its AOS beside
the average's.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Mapping

import torch


def task_vector_median(experts: Mapping[str, Mapping[str, torch.Tensor]], base: Mapping[str, torch.Tensor] | None,
                       parameters: dict) -> dict[str, torch.Tensor]:
    if base is None:
        raise ValueError("task_vector_median needs the base model")
    scale = float(parameters.get("scale", 1.0))
    out = {}
    for name, b in base.items():
        if not b.is_floating_point():
            out[name] = b.clone()
            continue
        deltas = torch.stack([e[name].float() - b.float() for e in experts.values()])
        out[name] = (b.float() + scale * deltas.median(dim=0).values).to(b.dtype)
    return out


def main() -> None:
    from arm_ray import logs, pipeline
    from arm_ray.config import parse_config
    from arm_ray.toy.chat import TINY_SHAPE
    from arm_ray.toy.perturbed import BENCHMARKS, build_perturbed_pool
    from arm_ray.tracing import LocalTracing

    logs.setup()
    work = Path(tempfile.mkdtemp(prefix="custom_operator_"))
    pool = build_perturbed_pool(str(work / "pool"), n_calibration=6, shape=TINY_SHAPE)
    cfg = parse_config({
        "base": {"path": str(pool / "base")},
        "experts": {f"{b}_expert": {"path": str(pool / f"expert_{b}")} for b in BENCHMARKS},
        "benchmarks": {b: {"expert": f"{b}_expert"} for b in BENCHMARKS},
        "calibration": {"files": [{"path": str(pool / "calibration" / f"{b}.jsonl")} for b in BENCHMARKS]},
        "operators": [{"name": "average", "method": "linear", "parameters": {"weight": 1.0}},
                      {"name": "median", "method": "examples.custom_operator:task_vector_median",
                       "parameters": {"scale": 1.0}}],
        "weak": {"benchmarks": [BENCHMARKS[0]]},
    })
    report = pipeline.run(cfg, work / "run", lambda ctx: LocalTracing(ctx.sources("cpu")))
    for c in report["candidates"]:
        print(f"{c['name']:>8} ({c['operator']}): mean AOS {c['mean_aos']:.4f}")
    print(f"selected backbone: {report['selected']}; ARM model in {work / 'run' / 'model'}")


if __name__ == "__main__":
    main()
