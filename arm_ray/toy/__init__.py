"""Toy models and their data, built offline in minutes on a CPU (no model hub needed).

    chat       the Qwen3-style chat template, byte-level BPE trainer, Qwen3 config helper, shapes
    cache      STAMP-keyed caching of a built pool, atomic JSONL
    perturbed  the quick pool (`configs/quick.yaml`): a random base and experts that are perturbed copies of it
    synthetic  the quick pool's calibration trajectories (tau-bench, OfficeBench, AgentBench OS formats)
    trained    the demo pool (`configs/demo.yaml`): a base and one SFT expert per in-domain suite of the world
    drills     copy drills that teach the trained pool's base to copy values
    train      the small causal-LM training loop both use
"""
