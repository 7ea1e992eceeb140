"""Each benchmark parser on hand-written assistant turns (ARM_SPEC, Roles)."""

import pytest

from arm_ray.roles.parsers import find_spans


def marked(parser, text, role=None):
    from arm_ray.roles.parsers import PARSERS

    return [text[s:e] for s, e in find_spans(parser, role or PARSERS[parser].role, text)]


def test_tau_two_calls_in_one_turn():
    text = ('Let me check.\n<tool_call>\n{"name": "a", "arguments": {}}\n</tool_call>\n'
            '<tool_call>\n{"name": "b", "arguments": {"x": 1}}\n</tool_call>')
    assert marked("tau_bench", text) == ['<tool_call>\n{"name": "a", "arguments": {}}\n</tool_call>',
                                         '<tool_call>\n{"name": "b", "arguments": {"x": 1}}\n</tool_call>']


def test_tau_truncated_call_runs_to_end_of_turn():
    text = 'ok <tool_call>\n{"name": "cancel", "argum'
    assert marked("tau_bench", text) == ['<tool_call>\n{"name": "cancel", "argum']


def test_tau_call_inside_think_is_not_marked():
    text = '<think>maybe <tool_call>{"name": "x"}</tool_call>?</think>\n<tool_call>{"name": "y"}</tool_call>'
    assert marked("tau_bench", text) == ['<tool_call>{"name": "y"}</tool_call>']


def test_tau_unicode_arguments():
    text = '<tool_call>\n{"name": "find_user", "arguments": {"name": "Zoë 李"}}\n</tool_call>'
    assert marked("tau_bench", text) == [text]


def test_office_simia_answer_with_nested_json_in_string():
    ans = '<answer>{"app": "email", "action": "send", "content": "{\\"a\\": [1, {\\"b\\": 2}]}"}</answer>'
    text = "<think>I will write {\"draft\": 1} first</think>\n" + ans
    assert marked("officebench", text) == [ans]


def test_office_malformed_json_is_still_marked():
    text = '<answer>{"app": "excel", "action": "write", "value": "C:\\q}</answer>'
    assert marked("officebench", text) == [text]


def test_office_official_format_ignores_braces_in_think():
    text = '<think>the dict {x} is wrong</think>Action: {"app": "word", "action": "read"} done'
    assert marked("officebench", text) == ['{"app": "word", "action": "read"}']


@pytest.mark.parametrize("text,expected", [
    ("Think: list.\n\nAct: bash\n\n```bash\nls -la /tmp\n```\n", ["Act: bash\n\n```bash\nls -la /tmp\n```"]),
    ("Think: done.\n\nAct: answer(f(1) + 2)", ["Act: answer(f(1) + 2)"]),
    ("Think: nothing left.\n\nAct: finish", ["Act: finish"]),
    ("Act: bash\n```bash\necho unterminated", ["Act: bash\n```bash\necho unterminated"]),
])
def test_agentbench_os(text, expected):
    assert marked("agentbench_os", text) == expected


@pytest.mark.parametrize("text,expected", [
    ("Thought: look for it.\nAction: search[red mug 12 oz]", ["search[red mug 12 oz]"]),
    ("Thought: this one.\nAction: click[B0[7]X]\n", ["click[B0[7]X]"]),
    ("search[not after an Action line]", []),
])
def test_webshop(text, expected):
    assert marked("webshop", text) == expected


def test_dbbench_operation_and_answer():
    op = "Action: Operation\n```sql\nSELECT name FROM users WHERE id = 3;\n```"
    assert marked("dbbench", "I query the table.\n" + op + "\n") == [op]
    ans = 'Action: Answer\nFinal Answer: ["Ann", "Bo"]'
    assert marked("dbbench", "It is done.\n" + ans) == [ans]


def test_alfworld_action_line():
    assert marked("alfworld", "THOUGHT: I need a mug.\nACTION: go to cabinet 1\n") == ["go to cabinet 1"]


def test_response_marks_whole_turn_for_any_parser():
    assert find_spans("alfworld", "response", "anything") == [(0, 8)]
    assert find_spans(None, "response", "") == []


def test_wrong_role_for_parser_is_an_error():
    with pytest.raises(KeyError, match="marks role 'tool_call'"):
        find_spans("tau_bench", "action", "x")
