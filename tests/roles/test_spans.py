"""Rendering with the chat template, spans only in assistant turns, token positions in both conventions."""

import numpy as np
import pytest

from arm_ray.roles.formats import Trajectory, parse_record
from arm_ray.roles.render import ChatRenderer
from arm_ray.roles.spans import TrajectoryEncoder, positions_from_mask, token_mask


def tau_record():
    return parse_record({"benchmark": "tau_bench",
                         "tools": [{"type": "function", "function": {"name": "get_order", "parameters": {}}}],
                         "messages": [
                             {"role": "system", "content": 'Example: <tool_call>{"name": "demo"}</tool_call>'},
                             {"role": "user", "content": "Where is order #W1? I wrote <tool_call>x</tool_call>"},
                             {"role": "assistant", "content": "",
                              "tool_calls": [{"function": {"name": "get_order",
                                                           "arguments": {"order_id": "#W1", "note": "Zoë"}}}]},
                             {"role": "tool", "content": "{\"status\": \"shipped\"}"},
                             {"role": "assistant", "content": "It has shipped."}]}, "t:1")


def test_structured_tool_call_is_rendered_and_marked(tokenizer):
    enc = TrajectoryEncoder(tokenizer).encode([tau_record()], ["tool_call"], keep_text=True)[0]
    texts = [enc.text[s.start:s.end] for s in enc.spans]
    assert texts == ['<tool_call>\n{"name": "get_order", "arguments": {"order_id": "#W1", "note": "Zoë"}}\n'
                     '</tool_call>']
    assert enc.spans[0].turn == 2
    # the system example, the template's tool instructions and the user's text hold the tag too: never marked
    assert enc.text.count("<tool_call>") == 4


def test_positions_match_tokenizer_offsets(tokenizer):
    enc = TrajectoryEncoder(tokenizer).encode([tau_record()], ["tool_call"], keep_text=True)[0]
    span = enc.spans[0]
    offs = enc.offsets
    expected = [i for i, (s, e) in enumerate(offs) if s < span.end and e > span.start]
    assert enc.positions["tool_call"].tolist() == expected
    assert tokenizer.decode(enc.input_ids[expected]) == enc.text[span.start:span.end]
    pred = TrajectoryEncoder(tokenizer, "predict").encode([tau_record()], ["tool_call"])[0]
    assert pred.positions["tool_call"].tolist() == [i - 1 for i in expected]


def test_user_turn_examples_are_not_marked(tokenizer):
    t = parse_record({"benchmark": "agentbench_os", "messages": [
        {"role": "user", "content": "Example:\nAct: bash\n```bash\nls\n```\nNow count files."},
        {"role": "assistant", "content": "Think: easy.\n\nAct: answer(3)"}]}, "x:1")
    enc = TrajectoryEncoder(tokenizer).encode([t], ["action"], keep_text=True)[0]
    assert [enc.text[s.start:s.end] for s in enc.spans] == ["Act: answer(3)"]


def test_response_marks_every_assistant_token_only(tokenizer):
    enc = TrajectoryEncoder(tokenizer).encode([tau_record()], ["response"], keep_text=True)[0]
    marked = tokenizer.decode(enc.input_ids[enc.positions["response"]])
    assert "It has shipped." in marked and "Where is order" not in marked and "<|im_start|>" not in marked


def test_truncation(tokenizer):
    enc = TrajectoryEncoder(tokenizer, max_length=10).encode([tau_record()], ["tool_call"])[0]
    assert enc.truncated and len(enc.input_ids) == 10 and len(enc.positions["tool_call"]) == 0


def test_token_mask_overlap_and_predict():
    offs = np.array([[0, 2], [2, 5], [5, 6], [6, 9]])
    m = token_mask(offs, [(3, 6)], 9)
    assert m.tolist() == [False, True, True, False]
    assert positions_from_mask(m, "predict").tolist() == [0, 1]
    with pytest.raises(ValueError):
        positions_from_mask(m, "other")


class _Tok:
    """A tokenizer stand-in for the renderer only: a template that drops old <think> text, as Qwen3's does."""

    chat_template = ("{% for m in messages %}<s>{{ m.role }}\n"
                     "{% if m.role == 'assistant' and not loop.last %}{{ m.content.split('</think>')[-1] }}"
                     "{% else %}{{ m.content }}{% endif %}</s>\n{% endfor %}"
                     "{% if add_generation_prompt %}<s>assistant\n{% endif %}")
    special_tokens_map = {"eos_token": "</s>"}
    all_special_tokens = ["</s>", "<s>"]


def test_renderer_falls_back_when_template_rewrites_old_turns():
    t = Trajectory([{"role": "user", "content": "q"},
                    {"role": "assistant", "content": "<think>hmm</think>A1"},
                    {"role": "user", "content": "q2"},
                    {"role": "assistant", "content": "<think>x</think>A2"}], source="r")
    r = ChatRenderer(_Tok()).render(t)
    assert [r.text[s:e] for _, s, e in r.turns] == ["A1", "<think>x</think>A2"]
