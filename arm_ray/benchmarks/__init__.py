"""Adapters that run real benchmarks' own tasks, tools, databases and evaluators as suites of our agent loop
(τ²-bench, AgentBench DB and OS). Each is a `Suite` like the offline world's (`arm_ray.world.base`), registered
by name in `arm_ray.suites` and imported only when a run asks for it."""
