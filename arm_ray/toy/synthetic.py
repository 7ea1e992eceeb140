"""Synthetic agent trajectories in the formats ARM_SPEC names: the quick pool's calibration data, and the tests'.

Three in-domain benchmarks: `tau_bench` (OpenAI messages, structured
`tool_calls`, tool schemas), `officebench` (ShareGPT, SIMIA
`<think>…</think><answer>{…}</answer>`), `agentbench_os` (OpenAI messages,
`Act: bash` blocks). Deterministic for a seed.
"""

from __future__ import annotations

import json
import random

NAMES = ["Ada", "Bo", "Chen", "Dara", "Eli", "Fay", "Gus", "Hana", "Ivo", "Jun", "Kai", "Lea", "Mo", "Noor"]
ITEMS = ["lamp", "kettle", "desk", "chair", "mug", "camera", "jacket", "boots", "tent", "router"]
FILES = ["notes.txt", "report.csv", "todo.md", "data.json", "log.txt"]

RETAIL_TOOLS = [
    {"type": "function", "function": {"name": "find_user", "description": "Look up a user by name.",
     "parameters": {"type": "object", "properties": {"name": {"type": "string"}}, "required": ["name"]}}},
    {"type": "function", "function": {"name": "get_order", "description": "Read an order.",
     "parameters": {"type": "object", "properties": {"order_id": {"type": "string"}}, "required": ["order_id"]}}},
    {"type": "function", "function": {"name": "cancel_order", "description": "Cancel a pending order.",
     "parameters": {"type": "object", "properties": {"order_id": {"type": "string"}, "reason": {"type": "string"}},
                    "required": ["order_id", "reason"]}}},
]


def retail_trajectory(rng: random.Random) -> dict:
    name, item = rng.choice(NAMES), rng.choice(ITEMS)
    oid = f"#W{rng.randint(1000, 9999)}"
    uid = f"{name.lower()}_{rng.randint(10, 99)}"

    def call(fn, args):
        return {"role": "assistant", "content": "", "tool_calls": [
            {"type": "function", "function": {"name": fn, "arguments": json.dumps(args)}}]}

    return {
        "benchmark": "tau_bench",
        "tools": RETAIL_TOOLS,
        "messages": [
            {"role": "system", "content": "You are a retail support agent. Follow the policy; act only through tools."},
            {"role": "user", "content": f"Hi, I am {name}. Please cancel my order {oid} for the {item}."},
            call("find_user", {"name": name}),
            {"role": "tool", "content": json.dumps({"user_id": uid, "orders": [oid]})},
            call("get_order", {"order_id": oid}),
            {"role": "tool", "content": json.dumps({"order_id": oid, "status": "pending", "items": [item]})},
            {"role": "assistant", "content": f"Order {oid} ({item}) is pending. Shall I cancel it? Reason: no longer needed?"},
            {"role": "user", "content": "Yes, please."},
            call("cancel_order", {"order_id": oid, "reason": "no longer needed"}),
            {"role": "tool", "content": json.dumps({"order_id": oid, "status": "cancelled"})},
            {"role": "assistant", "content": f"Done: order {oid} is cancelled and will be refunded."},
        ],
    }


def office_trajectory(rng: random.Random) -> dict:
    name, other = rng.sample(NAMES, 2)
    day = rng.randint(1, 28)
    hour = rng.randint(9, 17)

    def answer(thought, action):
        return {"from": "gpt", "value": f"<think>{thought}</think>\n<answer>{json.dumps(action)}</answer>"}

    return {
        "benchmark": "officebench",
        "system": "You operate office apps. Reply with <think>reasoning</think> then <answer>{json action}</answer>.",
        "conversations": [
            {"from": "human", "value": f"Schedule a meeting with {other} on 2024-05-{day:02d} at {hour}:00 and email them."},
            answer("I need the calendar app first.", {"app": "system", "action": "switch_app", "target_app": "calendar"}),
            {"from": "human", "value": "Observation: switched to calendar."},
            answer(f"Create the event for {other}.", {"app": "calendar", "action": "create_event", "user": name,
                                                      "summary": f"Meeting with {other}",
                                                      "time_start": f"2024-05-{day:02d} {hour}:00"}),
            {"from": "human", "value": "Observation: event created."},
            answer("Now tell them by email.", {"app": "email", "action": "send_email", "sender": name,
                                               "recipient": other, "title": "Meeting",
                                               "content": f"See you on May {day} at {hour}:00."}),
            {"from": "human", "value": "Observation: email sent."},
            answer("All steps are done.", {"app": "system", "action": "finish_task"}),
        ],
    }


def os_trajectory(rng: random.Random) -> dict:
    fname = rng.choice(FILES)
    n = rng.randint(2, 40)
    return {
        "benchmark": "agentbench_os",
        "messages": [
            {"role": "system", "content": "You are a shell agent. Answer with Think: ... then Act: bash, Act: answer(...) or Act: finish."},
            {"role": "user", "content": f"How many lines does /data/{fname} have?"},
            {"role": "assistant", "content": f"Think: count the lines with wc.\n\nAct: bash\n\n```bash\nwc -l /data/{fname}\n```"},
            {"role": "user", "content": f"The output of the OS:\n{n} /data/{fname}"},
            {"role": "assistant", "content": f"Think: the file has {n} lines.\n\nAct: answer({n})"},
        ],
    }


GENERATORS = {"tau_bench": retail_trajectory, "officebench": office_trajectory, "agentbench_os": os_trajectory}


def make_trajectories(benchmark: str, n: int, seed: int) -> list[dict]:
    rng = random.Random(f"{benchmark}:{seed}")
    return [GENERATORS[benchmark](rng) for _ in range(n)]


def corpus_lines(seed: int = 0, n: int = 60) -> list[str]:
    """Text the quick pool's tokenizer is trained on: these trajectories' words and markup."""
    lines = []
    for bench in GENERATORS:
        for rec in make_trajectories(bench, n, seed + 1000):
            lines.append(json.dumps(rec, ensure_ascii=False))
    return lines
