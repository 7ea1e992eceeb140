"""retail: mirrors tau-bench retail.

Tools are OpenAI function schemas; the agent calls them as Hermes/Qwen
`<tool_call>{"name": ..., "arguments": {...}}</tool_call>`; only the first call
of a turn runs. A scripted user opens with the task's request and, once the
agent answers in plain text, ends with `###STOP###`. Reward 1 only when the
final database equals the one the gold actions produce AND every required
output appears in the agent's replies (tau-bench's rule).
"""

from __future__ import annotations

import copy
import hashlib
import json
import random

from arm_ray.roles.parsers import tau_bench as find_tool_calls
from arm_ray.world.base import Env, Start, StepResult, Task, assistant_turns
from arm_ray.world.demos import WorldSuite

FIRST = ["sara", "omar", "lena", "ivan", "mei", "raj", "ana", "tom", "yuki", "noah", "eva", "li", "kofi", "zoe"]
LAST = ["lee", "khan", "silva", "novak", "chen", "patel", "garcia", "brown", "sato", "smith", "ito", "diaz"]
PRODUCTS = ["lamp", "kettle", "backpack", "headphones", "mug", "keyboard", "blender", "jacket", "watch", "tent"]

SYSTEM = ("You are a retail support agent. Authenticate the user with find_user_id first, then help with "
          "their order. Cancel only pending orders. Reply to the user in plain text when done.")

TOOLS = [
    {"type": "function", "function": {
        "name": "find_user_id", "description": "Find a user id by name and zip code.",
        "parameters": {"type": "object", "properties": {"name": {"type": "string"}, "zip": {"type": "string"}},
                       "required": ["name", "zip"]}}},
    {"type": "function", "function": {
        "name": "get_order_details", "description": "Status, items and total of an order.",
        "parameters": {"type": "object", "properties": {"order_id": {"type": "string"}},
                       "required": ["order_id"]}}},
    {"type": "function", "function": {
        "name": "cancel_pending_order", "description": "Cancel a pending order.",
        "parameters": {"type": "object", "properties": {"order_id": {"type": "string"}, "reason": {"type": "string"}},
                       "required": ["order_id", "reason"]}}},
]
STOP = "###STOP###"


def tool_call_text(name: str, arguments: dict) -> str:
    # exactly what the Qwen-style template renders for a structured tool call
    return "<tool_call>\n" + json.dumps({"name": name, "arguments": arguments}, ensure_ascii=False) + "\n</tool_call>"


def db_hash(db: dict) -> str:
    return hashlib.sha256(json.dumps(db, sort_keys=True).encode()).hexdigest()


class RetailEnv(Env):
    def reset(self) -> Start:
        d = self.task.data
        self.state = {"db": copy.deepcopy(d["db"]), "user": None, "replies": []}
        return Start([{"role": "system", "content": SYSTEM}, {"role": "user", "content": d["request"]}], TOOLS)

    def step(self, action_text: str) -> StepResult:
        spans = find_tool_calls(action_text)
        if not spans:  # a plain reply to the user: the scripted user ends the conversation
            self.state["replies"].append(action_text)
            return StepResult([{"role": "user", "content": f"Thanks, that is all. {STOP}"}], done=True,
                              finish_reason="user_stop")
        s, e = spans[0]  # only the first call of a turn runs
        body = action_text[s:e].removeprefix("<tool_call>").removesuffix("</tool_call>").strip()
        try:
            call = json.loads(body)
            name, args = call["name"], call.get("arguments", {})
            if not isinstance(args, dict):
                raise TypeError("arguments must be an object")
        except (ValueError, KeyError, TypeError) as err:
            return StepResult([_tool(f"Error: malformed tool call ({err})")], invalid=True)
        handler = getattr(self, f"_tool_{name}", None)
        if handler is None:
            return StepResult([_tool(f"Error: unknown tool {name!r}")], invalid=True)
        try:
            return StepResult([_tool(handler(**args))])
        except TypeError as err:
            return StepResult([_tool(f"Error: bad arguments for {name} ({err})")], invalid=True)

    def _tool_find_user_id(self, name: str, zip: str) -> str:  # noqa: A002 - the tool's own argument name
        for uid, u in self.state["db"]["users"].items():
            if u["name"] == name and u["zip"] == zip:
                self.state["user"] = uid
                return uid
        return "Error: user not found"

    def _order(self, order_id: str):
        if self.state["user"] is None:
            return None, "Error: authenticate the user first"
        order = self.state["db"]["orders"].get(order_id)
        if order is None or order["user_id"] != self.state["user"]:
            return None, "Error: order not found"
        return order, None

    def _tool_get_order_details(self, order_id: str) -> str:
        order, err = self._order(order_id)
        return err or json.dumps({"order_id": order_id, **order}, ensure_ascii=False)

    def _tool_cancel_pending_order(self, order_id: str, reason: str) -> str:
        order, err = self._order(order_id)
        if err:
            return err
        if order["status"] != "pending":
            return f"Error: order is {order['status']}, not pending"
        order["status"] = "cancelled"
        order["cancel_reason"] = reason
        return json.dumps({"order_id": order_id, "status": "cancelled"})

    def reward(self) -> float:
        d = self.task.data
        gold = copy.deepcopy(d["db"])
        for order_id, reason in d["gold_cancel"]:
            gold["orders"][order_id].update(status="cancelled", cancel_reason=reason)
        said = " ".join(self.state["replies"]).lower().replace(",", "")
        outputs_ok = all(o.lower() in said for o in d["outputs"])
        return float(db_hash(self.state["db"]) == db_hash(gold) and outputs_ok)


def _tool(content: str) -> dict:
    return {"role": "tool", "content": content}


class RetailSuite(WorldSuite):
    name = "retail"
    parser = "tau_bench"
    max_steps = 8

    def _make_task(self, rng: random.Random, index: int) -> Task:
        users, orders = {}, {}
        for _ in range(3):
            first, last = rng.choice(FIRST), rng.choice(LAST)
            uid = f"{first}_{last}_{rng.randint(1000, 9999)}"
            users[uid] = {"name": f"{first.title()} {last.title()}", "zip": f"{rng.randint(10000, 99999)}"}
            for _ in range(2):
                oid = f"#W{rng.randint(1000, 9999)}"
                items = [{"name": p, "price": round(rng.uniform(5, 300), 2)} for p in rng.sample(PRODUCTS, 2)]
                orders[oid] = {"user_id": uid, "status": rng.choice(["pending", "delivered"]), "items": items,
                               "total": f"{sum(i['price'] for i in items):.2f}"}
        uid = rng.choice(sorted(users))
        oid = rng.choice(sorted(o for o, v in orders.items() if v["user_id"] == uid))
        u, order = users[uid], orders[oid]
        kind = rng.choice(["cancel", "total"])
        who = f"I am {u['name']}, zip {u['zip']}."
        if kind == "cancel":
            request = f"Hi! {who} Please cancel my order {oid}, I no longer need it."
            gold = [[oid, "no longer needed"]] if order["status"] == "pending" else []
            outputs = [] if gold else ["delivered"]
        else:
            request = f"Hello. {who} What is the total of my order {oid}?"
            gold, outputs = [], [order["total"]]
        return Task(self.name, "", kind, {"db": {"users": users, "orders": orders}, "request": request,
                                          "user": [u["name"], u["zip"]], "order_id": oid,
                                          "gold_cancel": gold, "outputs": outputs})

    def new_env(self, task: Task) -> RetailEnv:
        return RetailEnv(task)

    def oracle_step(self, task: Task, messages: list[dict]) -> str:
        d = task.data
        oid = d["order_id"]
        done = assistant_turns(messages)
        if done == 0:
            return tool_call_text("find_user_id", {"name": d["user"][0], "zip": d["user"][1]})
        if done == 1:
            return tool_call_text("get_order_details", {"order_id": oid})
        order = json.loads(messages[-1]["content"]) if done == 2 else None
        if task.kind == "total":
            return f"The total of order {oid} is ${order['total']}."
        if done == 2 and order["status"] == "pending":
            return tool_call_text("cancel_pending_order", {"order_id": oid, "reason": "no longer needed"})
        if done == 2:
            return f"Order {oid} was already delivered, so it cannot be cancelled."
        return f"Your order {oid} is cancelled."
