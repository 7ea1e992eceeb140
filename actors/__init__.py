"""Thin Ray actors around arm_ray: tracers (one model at a time each) and the coordinator."""
