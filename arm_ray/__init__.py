"""arm-ray: Agent-Role Merging (arXiv 2601.07309) on Ray.

`python -m arm_ray.main` runs the recipe (`pipeline.py`, read top to bottom);
README's Layout section says where each piece lives.
"""

__version__ = "0.1.0"
