"""What is computed from rollouts' eval rows; pure Python, no engine, no Ray.

    metrics    per-suite scores, AVG, WS, RHM, BEST-of-N, the results table
    diagnosis  dev gaps -> weak benchmarks
The rollouts themselves are in `arm_ray.rollout`.
"""
