"""`python -m arm_ray.benchmarks.export <suite> --split calibration --data-dir DIR`: a benchmark suite's gold
trajectories as calibration JSONL (the same command as `python -m arm_ray.rollout.export`, kept where the
benchmarks live)."""

import sys

from arm_ray.rollout.export import main

if __name__ == "__main__":
    sys.exit(main())
