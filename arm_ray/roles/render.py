"""Render a trajectory with the model's own chat template and locate its assistant turns.

An assistant turn's region in the rendered text is found by rendering prefixes
of the conversation: the text after `messages[:i]` + generation prompt, up to
the end of `messages[:i+1]` less the template's end-of-turn markup. This works
for any template that renders a conversation as the concatenation of its
turns. Templates that rewrite earlier turns (Qwen3 drops old `<think>` text)
fall back to finding the turn's rendered body, then its visible content, in
the full text.
"""

from __future__ import annotations

from dataclasses import dataclass

from arm_ray.errors import DataError
from arm_ray.roles.formats import Trajectory


@dataclass
class Rendered:
    text: str
    turns: list[tuple[int, int, int]]  # (message index, start, end) of each assistant turn in `text`


class ChatRenderer:
    def __init__(self, tokenizer):
        from transformers.utils.chat_template_utils import render_jinja_template

        template = getattr(tokenizer, "chat_template", None)
        if not template:
            raise DataError(f"tokenizer {getattr(tokenizer, 'name_or_path', '')!r} has no chat template")
        if isinstance(template, dict):
            template = template.get("default") or next(iter(template.values()))
        self._render_fn = render_jinja_template
        self._template = template
        # The same special-token variables `apply_chat_template` passes to templates.
        self._special = {k: v for k, v in tokenizer.special_tokens_map.items() if isinstance(v, str)}
        self._end_marks = sorted({t for t in tokenizer.all_special_tokens if t}, key=len, reverse=True)

    def _render(self, messages, tools, generation_prompt: bool) -> str:
        rendered, _ = self._render_fn([messages], tools=tools, chat_template=self._template,
                                      add_generation_prompt=generation_prompt, **self._special)
        return rendered[0]

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
        turns = []
        cursor = 0
        for i, m in enumerate(msgs):
            if m["role"] != "assistant":
                continue
            before = self._render(msgs[:i], tools, True) if i else self._render([], tools, True)
            upto = self._render(msgs[: i + 1], tools, False)
            if upto.startswith(before) and full.startswith(upto) and len(before) >= cursor:
                start, end = len(before), self._strip_end(upto, len(before))
            else:
                start, end = self._search(full, upto[len(before):] if upto.startswith(before) else "", m, cursor, traj)
            turns.append((i, start, end))
            cursor = end
        return Rendered(full, turns)

    def _search(self, full: str, body: str, msg: dict, cursor: int, traj: Trajectory) -> tuple[int, int]:
        for candidate in (body.strip(), msg["content"].split("</think>")[-1].strip()):
            if candidate:
                at = full.find(candidate, cursor)
                if at >= 0:
                    return at, at + len(candidate)
        raise DataError(f"{traj.source}: cannot locate an assistant turn in the rendered chat; "
                        "the chat template rewrites it beyond recognition")
