"""The fast-sandbox template renders exactly what transformers renders, and keeps the sandbox's checks."""

import jinja2
import pytest

from arm_ray.roles.formats import parse_record
from arm_ray.roles.template import compile_chat_template
from arm_ray.toy.synthetic import make_trajectories
from tests.roles.test_spans import tau_record


def _records():
    recs = [tau_record()]
    for bench in ("tau_bench", "officebench", "agentbench_os"):
        recs += [parse_record(r, f"{bench}:{i}") for i, r in enumerate(make_trajectories(bench, 3, seed=1))]
    return recs


@pytest.mark.parametrize("generation_prompt", [False, True])
def test_same_text_as_apply_chat_template(tokenizer, generation_prompt):
    template = compile_chat_template(tokenizer.chat_template)
    special = {k: v for k, v in tokenizer.special_tokens_map.items() if isinstance(v, str)}
    for t in _records():
        ours = template.render(messages=t.messages, tools=t.tools, documents=None,
                               add_generation_prompt=generation_prompt, **special)
        theirs = tokenizer.apply_chat_template(t.messages, tools=t.tools, tokenize=False,
                                               add_generation_prompt=generation_prompt)
        assert ours == theirs, t.source


def test_generation_tag_and_dict_method_names():
    src = ("{% for m in messages %}{% generation %}[{{ m.role }}:{{ m.content | upper }}]{% endgeneration %}"
           "{{ m.items is defined }}{{ m.missing is defined }}{% if loop.last %}.{% endif %}{% endfor %}")
    out = compile_chat_template(src).render(messages=[{"role": "user", "content": "hi", "items": "x"}])
    # `m.items` is dict.items (an attribute wins over an item, as in Jinja); `m.missing` is undefined
    assert out == "[user:HI]TrueFalse."


def test_sandbox_still_blocks_internals():
    with pytest.raises(jinja2.exceptions.SecurityError):
        compile_chat_template("{{ ''.__class__.__mro__ }}").render()
    with pytest.raises(jinja2.exceptions.SecurityError):
        compile_chat_template("{{ messages.append(1) }}").render(messages=[])
    with pytest.raises(jinja2.exceptions.TemplateError, match="boom"):
        compile_chat_template("{{ raise_exception('boom') }}").render()
