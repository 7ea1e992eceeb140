"""arm-ray: Agent-Role Merging (arXiv 2601.07309) on Ray."""

__version__ = "0.1.0"
