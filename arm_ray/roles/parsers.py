"""One deterministic span parser per benchmark (ARM_SPEC, "Roles").

A parser reads the text of ONE assistant turn and returns character spans
(start, end) of its role-critical content. Spans include their markup (tags,
`Act:` lines, fences): the failures ARM repairs are formatting failures. Text
inside `<think>` is blanked first, so reasoning never counts as an answer.
A span cut off by the end of the turn (no closing tag or fence) runs to the
end of the turn; malformed JSON inside the markup is still marked.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Callable

Span = tuple[int, int]

RESPONSE = "response"  # role-agnostic ablation: every assistant token

_THINK = re.compile(r"<think>.*?(?:</think>|\Z)", re.S)


def blank_think(text: str) -> str:
    """Replace `<think>…</think>` (or an unclosed `<think>…`) with spaces; offsets stay valid."""
    return _THINK.sub(lambda m: " " * len(m.group()), text)


def _line_end(text: str, pos: int) -> int:
    end = text.find("\n", pos)
    return len(text) if end < 0 else end


def _fenced_block_end(text: str, pos: int) -> int:
    """End of the first ``` block opening at or after `pos`; end of text when unclosed."""
    open_at = text.find("```", pos)
    if open_at < 0:
        return _line_end(text, pos)
    body = _line_end(text, open_at)  # the fence's own line (```bash) is part of the opening
    close = text.find("```", body)
    return len(text) if close < 0 else close + 3


def _last_on_line(text: str, char: str, start: int) -> int:
    """Index just after the last `char` on the line that holds `start`; end of line if none."""
    end = _line_end(text, start)
    at = text.rfind(char, start, end)
    return end if at < 0 else at + 1


def _tagged(tag: str) -> Callable[[str], list[Span]]:
    pattern = re.compile(rf"<{tag}>.*?(?:</{tag}>|\Z)", re.S)

    def parse(text: str) -> list[Span]:
        return [m.span() for m in pattern.finditer(blank_think(text))]

    return parse


tau_bench = _tagged("tool_call")
_office_answer = _tagged("answer")


def officebench(text: str) -> list[Span]:
    """SIMIA format `<answer>{…}</answer>`; otherwise the official format, first `{` to last `}`."""
    spans = _office_answer(text)
    if spans:
        return spans
    visible = blank_think(text)
    first = visible.find("{")
    if first < 0:
        return []
    last = visible.rfind("}")
    return [(first, last + 1 if last > first else len(visible))]


# AgentBench OS reads `Act:` then any whitespace (a newline too), case-insensitively; answer's value sits between
# the first "(" and the last ")" of its line
_ACT = re.compile(r"Act:\s*(bash\b|answer\s*\(|finish\b)?", re.I)


def agentbench_os(text: str) -> list[Span]:
    """`Act: bash` + its bash block, `Act: answer(…)`, `Act: finish`."""
    visible = blank_think(text)
    spans = []
    for m in _ACT.finditer(visible):
        kind = (m.group(1) or "").lower()
        if kind == "bash":
            end = _fenced_block_end(visible, m.end())
        elif kind.startswith("answer"):
            end = _last_on_line(visible, ")", m.end())
        elif kind == "finish":
            end = m.end()
        else:  # an unknown action: its line is still the action span
            end = _line_end(visible, m.end())
        spans.append((m.start(), end))
    return _disjoint(spans)


# AgentBench WebShop reads `Action:` (or `action:`), spaces, newlines, spaces, then `search[…]`/`click[…]` up to the
# first `]` on that line: its own one-shot example puts the action on the line after `Action:`
_WEB_ACTION = re.compile(r"[Aa]ction: *\n* *((?:search|click)\[)")


def webshop(text: str) -> list[Span]:
    """`search[…]` / `click[…]` after `Action:`; the bracket closes at the first `]` on its line."""
    visible = blank_think(text)
    spans = []
    for m in _WEB_ACTION.finditer(visible):
        end = _line_end(visible, m.end(1))
        close = visible.find("]", m.end(1) + 1, end)  # `.+?]`: at least one character inside
        spans.append((m.start(1), close + 1 if close >= 0 else end))
    return spans


_DB_ACTION = re.compile(r"Action:[ \t]*(Operation|Answer)\b")


def dbbench(text: str) -> list[Span]:
    """`Action: Operation` + its sql block, or `Action: Answer` + `Final Answer: […]`."""
    visible = blank_think(text)
    spans = []
    for m in _DB_ACTION.finditer(visible):
        if m.group(1) == "Operation":
            end = _fenced_block_end(visible, m.end())
        else:
            final = visible.find("Final Answer:", m.end())
            end = _last_on_line(visible, "]", final) if final >= 0 else _line_end(visible, m.end())
        spans.append((m.start(), end))
    return _disjoint(spans)


_ALF_ACTION = re.compile(r"ACTION:[ \t]*([^\n]*)")


def alfworld(text: str) -> list[Span]:
    """The text after `ACTION:` to the end of its line."""
    spans = []
    for m in _ALF_ACTION.finditer(blank_think(text)):
        start, end = m.span(1)
        end = start + len(m.group(1).rstrip())
        if end > start:
            spans.append((start, end))
    return spans


def _disjoint(spans: list[Span]) -> list[Span]:
    # A block that swallows a later `Act:` (e.g. an unclosed fence) keeps the earlier span only.
    out: list[Span] = []
    for s, e in sorted(spans):
        if out and s < out[-1][1]:
            continue
        out.append((s, e))
    return out


@dataclass(frozen=True)
class Parser:
    name: str
    role: str
    find: Callable[[str], list[Span]]


PARSERS: dict[str, Parser] = {
    p.name: p
    for p in (
        Parser("tau_bench", "tool_call", tau_bench),
        Parser("officebench", "final_answer", officebench),
        Parser("agentbench_os", "action", agentbench_os),
        Parser("webshop", "action", webshop),
        Parser("dbbench", "action", dbbench),
        Parser("alfworld", "action", alfworld),
    )
}


def default_role(parser: str) -> str:
    return get_parser(parser).role


def get_parser(name: str) -> Parser:
    try:
        return PARSERS[name]
    except KeyError:
        raise KeyError(f"unknown benchmark parser {name!r}; known: {', '.join(PARSERS)}") from None


def find_spans(parser: str | None, role: str, turn_text: str) -> list[Span]:
    """Spans of `role` in one assistant turn. `response` marks the whole turn, whatever the parser."""
    if role == RESPONSE:
        return [(0, len(turn_text))] if turn_text else []
    if parser is None:
        raise KeyError(f"role {role!r} needs a benchmark parser")
    p = get_parser(parser)
    if role != p.role:
        raise KeyError(f"benchmark parser {parser!r} marks role {p.role!r} (or {RESPONSE!r}), not {role!r}")
    return p.find(turn_text)
