"""`python -m arm_ray.main`: merge an expert pool with ARM (`arm-ray analyze RUN_DIR`: `arm_ray.analyze`).

With `--address` or RAY_ADDRESS set (as under `ray job submit`) it joins that
cluster; otherwise it starts an embedded local Ray. The driver validates the
config and every input first, so bad input fails in seconds with a clear
message, before Ray starts or any weight is loaded.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from arm_ray import logs
from arm_ray.cli import get_remote, guarded, init_ray
from arm_ray.config import RunConfig, load_config
from arm_ray.errors import ConfigError
from arm_ray.registry import resolve
from arm_ray.suites import SUITES

DEFAULT_CONFIG = "configs/demo.yaml"
log = logging.getLogger("arm_ray.main")  # also when run as __main__


def _absolute(ref: str) -> str:
    """Local paths become absolute (actors may run elsewhere); hub ids stay as they are."""
    p = Path(ref).expanduser()
    return str(p.resolve()) if p.exists() or ref.startswith((".", "/", "~")) else ref


def resolve_paths(cfg: RunConfig) -> RunConfig:
    data = cfg.model_dump()
    data["base"]["path"] = _absolute(data["base"]["path"])
    for e in data["experts"].values():
        e["path"] = _absolute(e["path"])
    for f in data["calibration"]["files"]:
        f["path"] = _absolute(f["path"])
    if data["weak"]["dev_results"]:
        data["weak"]["dev_results"] = _absolute(data["weak"]["dev_results"])
    for name, b in data["benchmarks"].items():  # the paths among a suite's options (data, trees, user models)
        if not b.get("options"):
            continue
        suite = SUITES.get(b["suite"], f"benchmarks.{name}.suite")  # options need a suite (config checks it)
        for dotted in suite.path_options:
            *parents, leaf = dotted.split(".")
            holder = b["options"]
            for key in parents:
                holder = holder.get(key) if isinstance(holder, dict) else None
            if isinstance(holder, dict) and isinstance(holder.get(leaf), str):
                holder[leaf] = _absolute(holder[leaf])
    return RunConfig.model_validate(data)


def parse_args(argv=None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog="python -m arm_ray.main", description=__doc__.split("\n\n")[0])
    ap.add_argument("--config", default=DEFAULT_CONFIG, help=f"run config (YAML); default {DEFAULT_CONFIG}")
    ap.add_argument("--output", default="runs/demo", help="run directory (default runs/demo)")
    ap.add_argument("--overwrite", action="store_true", help="replace a run already in --output")
    ap.add_argument("--resume", action="store_true",
                    help="continue the run in --output: stages whose inputs have not changed are not run again")
    ap.add_argument("--address", default=None, help="Ray cluster to join (default: RAY_ADDRESS, else local)")
    ap.add_argument("--verbose", action="store_true",
                    help="show the rollout engines' own output on the console (default: in OUTPUT/logs/)")
    ap.add_argument("--no-preflight", action="store_true",
                    help="skip the driver-side checks (when inputs exist only on the workers)")
    return ap.parse_args(argv)


def run(argv=None) -> dict:
    args = parse_args(argv)
    logs.setup()
    if args.resume and args.overwrite:
        raise ConfigError("--resume and --overwrite: pick one (--overwrite starts the run afresh)")
    cfg = load_config(args.config)
    if cfg.prepare:
        resolve(cfg.prepare.call, "prepare.call")(**cfg.prepare.args)
    cfg = resolve_paths(cfg)
    out = Path(args.output).expanduser().resolve()
    from arm_ray.prepare import check_output_dir, prepare

    check_output_dir(out, args.overwrite, probe=not args.no_preflight, resume=args.resume)
    if not args.no_preflight:
        prepare(cfg)
    init_ray(args.address)
    import ray

    from arm_ray import capacity

    if not cfg.resources.autoscaling:  # a fixed cluster: what it cannot hold now it never will
        capacity.check(cfg.resources, cfg.evaluation is not None,
                       [n["Resources"] for n in ray.nodes() if n.get("Alive")])

    from actors.coordinator import Coordinator

    coordinator = Coordinator.options(num_cpus=cfg.resources.coordinator_num_cpus).remote()
    try:
        report = get_remote(coordinator.run.remote(cfg.model_dump(), str(out), args.overwrite, args.resume,
                                                    args.verbose))
    finally:
        ray.kill(coordinator)
    # the result, on stdout (progress and warnings go to stderr through logging)
    print(f"\nARM run written to {out}")
    print(f"  backbone: {report['selected']}; weak: {', '.join(w['benchmark'] for w in report['weak']) or 'none'}; "
          f"neurons transplanted: {sum(len(v) for v in report['transplanted'].values())}")
    print(f"  model: {out / 'model'}   report: {out / 'report.md'}")
    if report.get("evaluation") and not args.verbose:
        print(f"  engine logs: {out / 'logs'}/ (--verbose shows them on the console)")
    from arm_ray.report import results_md, resumed

    if resumed(report):
        print(f"  resumed: {resumed(report)}")
    if report.get("evaluation"):
        print("\n" + results_md(report))
    return report


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ["analyze"]:  # `arm-ray analyze RUN_DIR`: the paper's findings on a finished run
        from arm_ray import analyze

        return analyze.main(argv[1:])
    return guarded(run, argv, "interrupted; the output directory holds no complete model or report from this run")


if __name__ == "__main__":
    sys.exit(main())
