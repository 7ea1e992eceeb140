"""Compile a chat template the way transformers does, with a faster sandbox.

transformers renders templates in Jinja's immutable sandbox; on long agent
trajectories about half the render time goes to the sandbox's attribute checks
on `message.role`, `message.content`, ... Those are dict *items*, not Python
attributes, so no safety check applies to them: `FastSandbox` returns them
directly and keeps every check for real attributes (str methods, etc.).
The environment options, filters and globals match transformers', so the text
is identical (a test renders the same records through both).
"""

from __future__ import annotations

import json
from datetime import datetime
from functools import lru_cache

import jinja2
import jinja2.ext
import jinja2.nodes
import jinja2.runtime
from jinja2.sandbox import ImmutableSandboxedEnvironment

# Names that `getattr(dict, name)` resolves: for these Jinja prefers the attribute (`message.items`
# is the method), so they take the sandbox's normal path.
_DICT_ATTRS = frozenset(dir(dict))
_PLAIN = (str, jinja2.runtime.LoopContext)


class FastSandbox(ImmutableSandboxedEnvironment):
    def getattr(self, obj, attribute):
        if type(obj) is dict and attribute not in _DICT_ATTRS:
            # Jinja's own rule for a dict: attribute lookup fails, so the item is used.
            try:
                return obj[attribute]
            except KeyError:
                return self.undefined(obj=obj, name=attribute)
        if type(obj) in _PLAIN and not attribute.startswith("_") and attribute not in ("format", "format_map"):
            # str methods and `loop.index` etc.: for these types the sandbox's only rule is
            # "no underscore names" (and str.format is wrapped, so it keeps the slow path)
            try:
                return getattr(obj, attribute)
            except AttributeError:
                return self.undefined(obj=obj, name=attribute)
        return super().getattr(obj, attribute)


class GenerationTag(jinja2.ext.Extension):
    """`{% generation %}...{% endgeneration %}` marks assistant text for training masks; rendering ignores it."""

    tags = {"generation"}

    def parse(self, parser):
        next(parser.stream)
        return parser.parse_statements(("name:endgeneration",), drop_needle=True)


def _raise_exception(message):
    raise jinja2.exceptions.TemplateError(message)


def _tojson(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False):
    # transformers' override: no HTML escaping, and the json.dumps options exposed
    return json.dumps(x, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys)


def _strftime_now(fmt):
    return datetime.now().strftime(fmt)


@lru_cache(maxsize=8)
def compile_chat_template(source: str) -> jinja2.Template:
    env = FastSandbox(trim_blocks=True, lstrip_blocks=True, extensions=[GenerationTag, jinja2.ext.loopcontrols])
    env.filters["tojson"] = _tojson
    env.globals["raise_exception"] = _raise_exception
    env.globals["strftime_now"] = _strftime_now
    return env.from_string(source)
