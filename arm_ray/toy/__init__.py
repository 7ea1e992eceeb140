"""Toy models and their data, built offline in minutes on a CPU (no model hub needed).

    chat       the Qwen3-style chat template, byte-level BPE trainer, Qwen3 config helper, shapes
    perturbed  the quick pool (`configs/quick.yaml`): a random base and experts that are perturbed copies of it
    synthetic  the quick pool's calibration trajectories (tau-bench, OfficeBench, AgentBench OS formats)
    trained    the demo pool (`configs/demo.yaml`): a generalist base and experts that sharpen it, one per suite
    gate       whether a pool is in the paper's regime, read from an ARM run on it
    drills     copy drills that teach the trained pool's base to copy values
Training, caching and scoring come from `arm_ray.experts`.
"""
