"""Extension points: dotted `package.module:name` strings, and lazy registries of them (as vLLM keeps its models).

Every place a config names code (an operator, a suite, the `prepare` call) goes
through `resolve`, so every such mistake reads the same way:
`<field>: cannot import '<dotted>' (<why>)`.
"""

from __future__ import annotations

import importlib
from typing import Any

from arm_ray.errors import ConfigError


def is_dotted(ref: str) -> bool:
    return ":" in ref


def resolve(dotted: str, where: str) -> Any:
    """The object a `package.module:name` string names; a ConfigError naming `where` when it cannot."""
    module, _, name = dotted.partition(":")
    if not module or not name:
        raise ConfigError(f"{where}: {dotted!r} is not a 'package.module:name' string")
    try:
        obj = importlib.import_module(module)
    except ImportError as e:
        raise ConfigError(f"{where}: cannot import {dotted!r} ({type(e).__name__}: {e})") from None
    for part in name.split("."):
        if not hasattr(obj, part):
            raise ConfigError(f"{where}: cannot import {dotted!r} (module {module!r} has no {name!r})")
        obj = getattr(obj, part)
    return obj


class Registry:
    """Names of one kind of component -> dotted strings, imported only when first asked for.

    A dotted string is accepted wherever a registered name is, so code outside
    this package plugs in without registering. There is deliberately no
    `register`: a name registered in the driver would not exist in the Ray
    actors' processes, where a dotted string imports the same everywhere.
    """

    def __init__(self, kind: str, entries: dict[str, str]):
        self.kind, self.entries = kind, dict(entries)

    def __iter__(self):
        return iter(self.entries)

    def known(self, ref: str) -> bool:
        """A registered name or a dotted string (whether it imports is checked by `get`)."""
        return ref in self.entries or is_dotted(ref)

    def unknown_message(self, ref: str) -> str:
        return (f"unknown {self.kind} {ref!r}; known: {', '.join(self.entries)} "
                "(or a 'package.module:Name' string)")

    def get(self, ref: str, where: str | None = None) -> Any:
        where = where or self.kind
        if not self.known(ref):
            raise ConfigError(f"{where}: {self.unknown_message(ref)}")
        return resolve(self.entries.get(ref, ref), where)
