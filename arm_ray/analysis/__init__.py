"""The paper's findings over a run directory (`python -m arm_ray.analyze`): statistics, findings, plots, report."""
