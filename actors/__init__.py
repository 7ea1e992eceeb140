"""Thin Ray actors around arm_ray: tracers, rollouts (vLLM) and the coordinator."""
