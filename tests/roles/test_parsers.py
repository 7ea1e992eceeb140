"""Each benchmark parser on hand-written assistant turns (ARM_SPEC, Roles)."""

import re

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
    ("Thought: this one.\nAction: click[B0[7]X]\n", ["click[B0[7]"]),  # the harness stops at the first ]
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


# -- replies laid out as AgentBench v0.2's own prompts and one-shot examples lay them out (our words), each parsed
# by the official harness's own rule (the regexes below restate them) and by ours: our span holds what it reads

def _official_webshop(text):
    m = re.search(r"[Aa]ction: *\n* *((search|click)\[.+?])", text)
    return m.group(1) if m else None


def _official_os(text):
    """src/server/tasks/os_interaction/task.py extract_action: the last valid `Act:`, case-insensitive."""
    for act in reversed(re.findall(r"Act:\s*(.+)", text)):
        low = act.lower()
        if low.startswith("bash"):
            return "bash", "\n\n".join(re.findall(r"```bash\n(.*?)\n```", text, re.S))
        if low.startswith("finish"):
            return "finish", None
        if low.startswith("answer"):
            content = act[6:].strip()
            if "(" in content and ")" in content:
                return "answer", content[content.find("(") + 1: content.rfind(")")]
    return None, None


def _official_db(text):
    action = re.search(r"Action: (.*?)\n", text)
    if action and action.group(1) == "Operation":
        return "Operation", re.search(r"```sql\n([\s\S]*?)\n```", text).group(1)
    return "Answer", re.search(r"\nFinal Answer:(.*)", text).group(1)


WEBSHOP_OFFICIAL = [
    "Thought:\nI should use the search bar to find the kettle.\n\nAction:\nsearch[electric kettle 1.7 l]",
    "Thought:\nThe second result matches, so I open it.\n\nAction:\nclick[B07XJ8C8F5]",
    "Thought:\nThe size I need is listed.\n\nAction:\nclick[1.7 l (pack of 1)]",
    "Thought: buy it.\naction: click[Buy Now]",
]


@pytest.mark.parametrize("text", WEBSHOP_OFFICIAL)
def test_webshop_on_the_official_layout(text):
    assert marked("webshop", text) == [_official_webshop(text)]


OS_OFFICIAL = [
    "Think: To count the files in /var, I list them.\n\nAct: bash\n\n```bash\nls /var\n```",
    "Think: The listing was cut, so I count with a pipe.\n\nAct: bash\n\n```bash\nls -1 /var | wc -l\n```",
    "Think: The count is 14.\n\nAct: answer(14)",
    "Think: The file is written.\n\nAct: finish",
    "Think: the answer has a space.\n\nAct: answer (hello world)",
    "Think: upper case works there too.\n\nAct: Bash\n\n```bash\nwhoami\n```",
    "Think: the action on its own line.\n\nAct:\nanswer(7)",
]


@pytest.mark.parametrize("text", OS_OFFICIAL)
def test_agentbench_os_on_the_official_layout(text):
    kind, content = _official_os(text)
    spans = marked("agentbench_os", text)
    assert kind and len(spans) == 1
    assert spans[0].lower().startswith("act:") and kind in spans[0].lower()
    assert content is None or content in spans[0]


DB_OFFICIAL = [
    "I count the rows.\nAction: Operation\n```sql\nSELECT COUNT(*) FROM `Medals` WHERE `Nation` = 'Chile';\n```",
    "The count is 3.\nAction: Answer\nFinal Answer: [\"3\"]",
    "I add the row.\nAction: Operation\n```sql\nINSERT INTO `Films` (`Year`) VALUES ('2019');\n```",
    "The row is in.\nAction: Answer\nFinal Answer: [\"none\"]",
]


@pytest.mark.parametrize("text", DB_OFFICIAL)
def test_dbbench_on_the_official_layout(text):
    kind, content = _official_db(text)
    spans = marked("dbbench", text)
    assert len(spans) == 1 and spans[0].startswith(f"Action: {kind}") and content in spans[0]


def test_alfworld_on_the_official_layout():
    """THOUGHT, then ` ACTION:` after a newline and a space, as the official multi-turn prompts write it."""
    for action in ("go to cabinet 1", "take spraybottle 2 from cabinet 2", "put spraybottle 2 in/on toilet 1"):
        text = f"THOUGHT: I need the bottle, so I look around.\n ACTION: {action}\n"
        official = re.search("ACTION:(.*)", text).group(1).strip().lower().split("\n")[0]
        assert marked("alfworld", text) == [official]


def test_response_marks_whole_turn_for_any_parser():
    assert find_spans("alfworld", "response", "anything") == [(0, 8)]
    assert find_spans(None, "response", "") == []


def test_wrong_role_for_parser_is_an_error():
    with pytest.raises(KeyError, match="marks role 'tool_call'"):
        find_spans("tau_bench", "action", "x")
