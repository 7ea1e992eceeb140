"""`python -m arm_ray.analyze RUN_DIR`: the paper's findings measured on a finished run (also `arm-ray analyze`).

The command line only: it checks the run directory and the options before Ray
starts, then runs the recipe (`arm_ray.analysis_pipeline`) in an analyst actor
beside the run's tracer and rollout actors. What each finding measures is in
that module's docstring.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from arm_ray.analysis_pipeline import ALL, Options, check, load_run
from arm_ray.cli import get_remote, guarded, init_ray
from arm_ray.errors import ConfigError


def parse_args(argv=None) -> tuple[argparse.Namespace, Options]:
    ap = argparse.ArgumentParser(prog="python -m arm_ray.analyze", description=__doc__.split("\n\n")[0])
    ap.add_argument("run_dir", help="a finished run's directory (python -m arm_ray.main --output)")
    ap.add_argument("--findings", default=",".join(map(str, ALL)), help="which, e.g. 1,2,4 (default all)")
    ap.add_argument("--ks", default=None, help="k values of the protection sweep, e.g. 0.01,0.05,0.1")
    ap.add_argument("--sizes", default=None, help="calibration sizes per benchmark, e.g. 2,4,8,16")
    ap.add_argument("--seeds", type=int, default=None, help="sampling seeds per calibration size (default 3)")
    ap.add_argument("--n-boot", type=int, default=None, help="bootstrap resamples (default 2000)")
    ap.add_argument("--verbose", action="store_true",
                    help="show the rollout engines' own output on the console (default: in RUN_DIR/logs/)")
    ap.add_argument("--address", default=None, help="Ray cluster to join (default: RAY_ADDRESS, else local)")
    args = ap.parse_args(argv)

    def numbers(text, kind, name):
        try:
            return [kind(x) for x in text.split(",") if x.strip()]
        except ValueError:
            raise ConfigError(f"--{name} {text!r}: expected comma-separated numbers") from None

    given = {"findings": numbers(args.findings, int, "findings")}
    for name, kind in (("ks", float), ("sizes", int)):
        if getattr(args, name) is not None:
            given[name] = numbers(getattr(args, name), kind, name)
    if args.seeds is not None:
        given["seeds"] = args.seeds
    if args.n_boot is not None:
        given["n_boot"] = args.n_boot
    try:
        return args, Options(**given)
    except ValueError as e:
        raise ConfigError(f"options: {e}") from None


def run(argv=None) -> dict:
    args, opts = parse_args(argv)
    run_dir = Path(args.run_dir).expanduser().resolve()
    stored = load_run(run_dir)
    check(stored, opts)  # before Ray starts
    init_ray(args.address)
    import ray

    from actors.coordinator import Analyst

    analyst = Analyst.options(num_cpus=stored.cfg.resources.coordinator_num_cpus).remote()
    try:
        state = get_remote(analyst.analyze.remote(str(run_dir), opts.model_dump(), args.verbose))
    finally:
        ray.kill(analyst)
    print(f"\nanalysis written to {run_dir / 'analysis'}")
    print("  stage times: " + ", ".join(f"{k} {v:.1f} s" for k, v in state["timings"].items()))
    print(f"  traces run: {state['traces']}; analysis rollout episodes: {state['rollout_episodes']}\n")
    print((run_dir / "analysis" / "analysis.md").read_text().split("\n## ")[0])
    return state


def main(argv=None) -> int:
    return guarded(run, argv, "interrupted; no analysis directory was written")


if __name__ == "__main__":
    sys.exit(main())
