"""Render a trajectory with the model's own chat template and locate its assistant turns.

An assistant turn's region is its rendered body (less the template's
end-of-turn markup), found right after the assistant header in the full text:
the body comes from rendering the turn alone after a probe user turn. When
that fails, prefixes of the conversation are rendered: the text after
`messages[:i]` + generation prompt, up to the end of `messages[:i+1]`.
Templates that rewrite earlier turns (Qwen3 drops old `<think>` text) fall back
to finding the turn's visible content in the full text.
"""

from __future__ import annotations

from dataclasses import dataclass

import jinja2

from arm_ray.errors import DataError
from arm_ray.roles.formats import Trajectory
from arm_ray.roles.template import compile_chat_template


@dataclass
class Rendered:
    text: str
    turns: list[tuple[int, int, int]]  # (message index, start, end) of each assistant turn in `text`


class ChatRenderer:
    def __init__(self, tokenizer):
        template = getattr(tokenizer, "chat_template", None)
        if not template:
            raise DataError(f"tokenizer {getattr(tokenizer, 'name_or_path', '')!r} has no chat template")
        if isinstance(template, dict):
            template = template.get("default") or next(iter(template.values()))
        try:
            self._template = compile_chat_template(template)
        except jinja2.TemplateError as e:
            raise DataError(f"tokenizer {getattr(tokenizer, 'name_or_path', '')!r}: its chat template does not "
                            f"compile ({e})") from None
        # The same special-token variables `apply_chat_template` passes to templates.
        self._special = {k: v for k, v in tokenizer.special_tokens_map.items() if isinstance(v, str)}
        self._end_marks = sorted({t for t in tokenizer.all_special_tokens if t}, key=len, reverse=True)
        # A probe user turn rendered without and with the generation prompt; the difference is the
        # assistant header ("<|im_start|>assistant\n"). Tools only shape the system block, so the probe
        # renders leave them out. The same for every trajectory: rendered once, here.
        self._probe = {"role": "user", "content": "\ue000"}
        try:
            user_only = self._render([self._probe], None, False)
            self._user_gen = self._render([self._probe], None, True)
        except Exception as e:  # noqa: BLE001 - jinja raises TemplateError, TypeError, ...
            raise DataError(f"tokenizer {getattr(tokenizer, 'name_or_path', '')!r}: its chat template fails on a "
                            f"plain user turn ({e})") from None
        gen = self._user_gen
        self._header = gen[len(user_only):] if gen.startswith(user_only) else ""  # "": only the prefix fallback

    def prompt(self, messages: list[dict], tools: list[dict] | None) -> str:
        """The text a model continues: the conversation plus the assistant header (as apply_chat_template)."""
        return self._render(messages, tools, True)

    def _render(self, messages, tools, generation_prompt: bool) -> str:
        return self._template.render(messages=messages, tools=tools, documents=None,
                                     add_generation_prompt=generation_prompt, **self._special)

    def _strip_end(self, text: str, start: int) -> int:
        """End of a turn's body: drop trailing whitespace and end-of-turn special tokens."""
        end = len(text)
        while True:
            trimmed = len(text[start:end].rstrip())
            end = start + trimmed
            for mark in self._end_marks:
                if text.endswith(mark, start, end):
                    end -= len(mark)
                    break
            else:
                return end

    def render(self, traj: Trajectory) -> Rendered:
        msgs, tools = traj.messages, traj.tools
        try:
            full = self._render(msgs, tools, False)
        except Exception as e:  # jinja raises TemplateError, TypeError, ... on odd records
            raise DataError(f"{traj.source}: the chat template failed on this record ({e})") from None
        assistant = [i for i, m in enumerate(msgs) if m["role"] == "assistant"]
        bodies = self._bodies(msgs, assistant) if self._header else None
        turns = []
        cursor = 0
        for n, i in enumerate(assistant):
            m = msgs[i]
            found = None
            if bodies is not None:
                found = self._find(full, bodies[n], cursor)
            if found is None and self._header:
                found = self._locate_alone(full, m, cursor)
            if found is None:
                found = self._locate_by_prefix(full, msgs, i, tools, m, cursor, traj)
            turns.append((i, *found))
            cursor = found[1]
        return Rendered(full, turns)

    def _bodies(self, msgs, assistant) -> list[str] | None:
        """Every assistant body from ONE render of [probe, a1, probe, a2, ...], split on the probe block."""
        conv = []
        for i in assistant:
            conv += [self._probe, msgs[i]]
        pieces = self._render(conv, None, False).split(self._user_gen)
        if pieces[0] or len(pieces) != len(assistant) + 1:
            return None
        return [p[: self._strip_end(p, 0)] for p in pieces[1:]]

    def _find(self, full, body, cursor):
        if not body:
            return None
        at = full.find(self._header + body, cursor)
        if at < 0:
            return None
        start = at + len(self._header)
        return start, start + len(body)

    def _locate_alone(self, full, msg, cursor):
        """Render the turn alone after a probe user turn; find header + body in the full text.

        One short render per turn keeps a long trajectory linear, not quadratic, in its length.
        """
        alone, gen = self._render([self._probe, msg], None, False), self._user_gen
        if not alone.startswith(gen):
            return None
        return self._find(full, alone[len(gen): self._strip_end(alone, len(gen))], cursor)

    def _locate_by_prefix(self, full, msgs, i, tools, msg, cursor, traj):
        before = self._render(msgs[:i], tools, True)
        upto = self._render(msgs[: i + 1], tools, False)
        if upto.startswith(before) and full.startswith(upto) and len(before) >= cursor:
            return len(before), self._strip_end(upto, len(before))
        return self._search(full, upto[len(before):] if upto.startswith(before) else "", msg, cursor, traj)

    def _search(self, full: str, body: str, msg: dict, cursor: int, traj: Trajectory) -> tuple[int, int]:
        for candidate in (body.strip(), msg["content"].split("</think>")[-1].strip()):
            if candidate:
                at = full.find(candidate, cursor)
                if at >= 0:
                    return at, at + len(candidate)
        raise DataError(f"{traj.source}: cannot locate an assistant turn in the rendered chat; "
                        "the chat template rewrites it beyond recognition")
