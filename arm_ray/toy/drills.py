"""Copy drills: the trained pool's base learns to copy values from a conversation before it reads the world.

Every suite's actions repeat values read from the conversation (names, ids,
amounts, file names). A tiny model does not learn that from a few hundred
episodes; these drills make copying the only way to predict a restatement.
"""

from __future__ import annotations

import json

SYLLABLES = ["ka", "lo", "mi", "ra", "ne", "to", "su", "vi", "da", "re", "po", "li", "ma", "zo", "be", "fa", "gu",
             "hi", "jo", "ke", "nu", "sa", "te", "wo"]


def _made_up(rng) -> str:
    return "".join(rng.choice(SYLLABLES) for _ in range(rng.randint(2, 3)))


def _values(rng, world_share: float = 1.0) -> dict[str, str]:
    """One random record: the kinds of values the suites' actions must repeat.

    With `world_share` < 1, names, people and topics are drawn from the world's short
    lists only that often, else made up from syllables: a value from a list of ten
    can be guessed from the list, which a small model learns instead of copying
    (measured: first token of such values copied 4-15 % of the time, of values from long lists 85-95 %).
    """
    from arm_ray.world.office import PEOPLE, TOPICS
    from arm_ray.world.retail import FIRST, LAST
    from arm_ray.world.shell import WORDS

    def pick(names):
        return rng.choice(names) if rng.random() < world_share else _made_up(rng)

    first, last = pick(FIRST), pick(LAST)
    word = rng.choice(WORDS)
    return {
        "name": f"{first.title()} {last.title()}",
        "zip": str(rng.randint(10000, 99999)),
        "order_id": f"#W{rng.randint(1000, 9999)}",
        "user_id": f"{first}_{last}_{rng.randint(1000, 9999)}",
        "total": f"{rng.randint(10, 999)}.{rng.randint(0, 99):02d}",
        "count": str(rng.randint(0, 400)),
        "file": f"{rng.choice([word, pick(TOPICS)])}.{rng.choice(['txt', 'csv', 'log'])}",
        "word": rng.choice(WORDS),
        "to": f"{pick(PEOPLE)}@corp.com",
        "title": f"{pick(TOPICS)} meeting",
        "date": f"2025-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}",
    }


# how each kind of value is said in prose without naming its key ("I am Sara Chen", "of roadmap.csv")
PHRASES = {
    "name": ["I am {}", "this is {}", "{} here", "my name is {}"],
    "zip": ["zip {}", "zip code {}", "I live in {}"],
    "order_id": ["order {}", "about {}", "my order {}"],
    "user_id": ["user {}", "account {}"],
    "total": ["it cost ${}", "${} in total", "I paid {}"],
    "count": ["{} items", "I found {}", "there are {}"],
    "file": ["the file {}", "of {}", "open {}", "save it to {}"],
    "word": ["the word '{}'", "search for {}"],
    "to": ["email {}", "send it to {}", "mail {}"],
    "title": ["an event '{}'", "called '{}'"],
    "date": ["on {}", "for {}"],
}
GREETINGS = ["", "Hi. ", "Hello! ", "Please help. "]


def copy_drills(seed: int, n: int, natural_share: float = 0.5, world_share: float = 0.3
                ) -> list[tuple[str, str]]:
    """(context, restatement) pairs: a few random values stated once, then repeated in another format.

    Every suite's actions repeat values read from the conversation (names, ids,
    amounts, file names). A small model does not learn that from a few hundred
    episodes; it learns the formats and invents the values. These drills make
    copying the only way to predict the restatement; the 4-layer toy model trained
    on them forms copy (induction) heads after about 900-1,200 steps. In a
    `natural_share` of them the context says each value the way a user or a task
    would ("I am Sara Chen", "of roadmap.csv"), without its key, so the model must
    find a value by how it is introduced, as the suites ask. The values are random
    (see `_values` for `world_share`), so nothing here leaks a task's answer.
    """
    import random

    rng = random.Random(f"drills:{seed}")
    out = []
    for _ in range(n):
        v = _values(rng, world_share)
        keys = rng.sample(sorted(v), rng.randint(2, 4))
        if "name" not in keys and rng.random() < 0.25:  # people are named in most of the world's text
            keys[0] = "name"
        if rng.random() < natural_share:  # the value's key is nowhere in the context: find it by its phrasing
            said = rng.sample(keys, len(keys))
            context = rng.choice(GREETINGS) + ", ".join(rng.choice(PHRASES[k]).format(v[k]) for k in said) + "."
        else:
            context = rng.choice([
                f"I am {v['name']}, " + ", ".join(f"{k} {v[k]}" for k in keys if k != "name") + ".",
                "Record: " + ", ".join(f"{k} {v[k]}" for k in keys) + ".",
                " ".join(f"The {k} is {v[k]}." for k in keys),
                "<tool_response>\n" + json.dumps({k: v[k] for k in keys}) + "\n</tool_response>",
            ])
        restated = rng.choice([
            json.dumps({k: v[k] for k in keys}),
            " ".join(f"{k}={v[k]}" for k in keys),
            "<tool_call>\n" + json.dumps({"name": "note", "arguments": {k: v[k] for k in keys}}) + "\n</tool_call>",
        ])
        out.append((context, restated))
    return out


def drill_examples(tokenizer, drills: list[tuple[str, str]], per_example: int):
    """Drills packed `per_example` at a time; the loss counts only on the restatements."""
    import numpy as np

    from arm_ray.experts.sft import Example

    sep = tokenizer.convert_tokens_to_ids("<|endoftext|>")
    ctx = tokenizer([c + "\n" for c, _ in drills], add_special_tokens=False)["input_ids"]
    rep = tokenizer([r for _, r in drills], add_special_tokens=False)["input_ids"]
    out = []
    for i in range(0, len(drills), per_example):
        ids, w = [], []
        for c, r in zip(ctx[i: i + per_example], rep[i: i + per_example]):
            ids += c + r + [sep]
            w += [0.0] * len(c) + [1.0] * (len(r) + 1)
        out.append(Example(np.asarray(ids, dtype=np.int64), np.asarray(w, dtype=np.float32)))
    return out


def copy_accuracy(model, examples) -> float:
    """Teacher-forced next-token accuracy on the drills' restatements (format tokens included)."""
    import torch

    hit = total = 0
    model.eval()
    for e in examples:
        ids = torch.from_numpy(e.ids)[None]
        with torch.inference_mode():
            pred = model(input_ids=ids).logits[0, :-1].argmax(-1)
        w = torch.from_numpy(e.weights[1:]) > 0
        hit += int((pred == ids[0, 1:])[w].sum())
        total += int(w.sum())
    return hit / max(total, 1)
