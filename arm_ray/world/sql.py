"""sql: mirrors DB-bench (out-of-domain: no expert is trained on it).

Each turn: `Action: Operation` with one statement in a ```sql block, or
`Action: Answer` with `Final Answer: [...]`. SELECT questions compare the
answer with the gold query's values as sets; INSERT/UPDATE tasks compare a
hash of the table with the one the gold statement produces.
"""

from __future__ import annotations

import ast
import hashlib
import json
import random
import re
import sqlite3

from arm_ray.roles.parsers import dbbench as find_actions
from arm_ray.world.base import Env, Start, StepResult, Task, assistant_turns
from arm_ray.world.demos import WorldSuite

NAMES = ["Alice", "Bruno", "Chloe", "Dmitri", "Elena", "Farid", "Greta", "Hugo", "Ines", "Jonas", "Kira", "Luca"]
DEPTS = ["Sales", "Ops", "Legal", "Design", "Support"]
SYSTEM = ("You answer questions with a SQLite database. Each turn write your reasoning, then either "
          "'Action: Operation' with one SQL statement in a ```sql block, or 'Action: Answer' followed by "
          "'Final Answer: [values]'. After a change (INSERT/UPDATE), answer 'Final Answer: [\"done\"]'.")
_SQL = re.compile(r"```sql[ \t]*\n?(.*?)(?:```|\Z)", re.S)
_FINAL = re.compile(r"Final Answer:\s*(\[.*\])", re.S)


def _open(data: dict) -> sqlite3.Connection:
    # the agent loop may step this episode from a worker thread; only one thread uses it at a time
    con = sqlite3.connect(":memory:", check_same_thread=False)
    con.execute("CREATE TABLE staff (name TEXT, dept TEXT, salary INTEGER)")
    con.executemany("INSERT INTO staff VALUES (?, ?, ?)", data["rows"])
    return con


def table_hash(con: sqlite3.Connection) -> str:
    rows = sorted(con.execute("SELECT name, dept, salary FROM staff").fetchall(), key=repr)
    return hashlib.sha256(json.dumps(rows).encode()).hexdigest()


def _values(rows) -> set[str]:
    return {str(v) for row in rows for v in (row if isinstance(row, (list, tuple)) else [row])}


class SqlEnv(Env):
    def reset(self) -> Start:
        self.state = {"con": _open(self.task.data), "answer": None}
        d = self.task.data
        schema = "Table staff(name TEXT, dept TEXT, salary INTEGER)."
        return Start([{"role": "system", "content": SYSTEM},
                      {"role": "user", "content": f"{d['question']}\n{schema}"}])

    def step(self, action_text: str) -> StepResult:
        spans = find_actions(action_text)
        if not spans:
            return StepResult([], done=True, invalid=True, finish_reason="invalid")
        act = action_text[spans[0][0]: spans[0][1]]
        if act.startswith("Action: Answer"):
            m = _FINAL.search(act)
            try:
                self.state["answer"] = ast.literal_eval(m.group(1)) if m else None
            except (ValueError, SyntaxError):
                self.state["answer"] = None
            if not isinstance(self.state["answer"], list):
                return StepResult([], done=True, invalid=True, finish_reason="invalid")
            return StepResult([], done=True, finish_reason="answer")
        m = _SQL.search(act)
        if not m or not m.group(1).strip():
            return StepResult([], done=True, invalid=True, finish_reason="invalid")
        try:
            rows = self.state["con"].execute(m.group(1).strip()).fetchall()
            self.state["con"].commit()
            out = str(rows)
        except sqlite3.Error as err:
            out = f"Error: {err}"
        return StepResult([{"role": "user", "content": out[:800]}])

    def reward(self) -> float:
        d = self.task.data
        if self.state["answer"] is None:
            return 0.0
        gold = _open(d)
        rows = gold.execute(d["gold_sql"]).fetchall()
        if d["kind"] == "select":
            return float(_values(self.state["answer"]) == _values(rows))
        return float(table_hash(self.state["con"]) == table_hash(gold))

    def close(self) -> None:
        if self.state.get("con") is not None:
            self.state["con"].close()


class SqlSuite(WorldSuite):
    name = "sql"
    parser = "dbbench"
    max_steps = 5

    def _make_task(self, rng: random.Random, index: int) -> Task:
        names = rng.sample(NAMES, rng.randint(4, 7))
        rows = [[n, rng.choice(DEPTS), rng.randint(30, 120) * 1000] for n in names]
        dept = rng.choice(sorted({r[1] for r in rows}))
        kind = rng.choice(["max", "count", "update", "insert"])
        if kind == "max":
            q, sql = (f"Who has the highest salary in {dept}?",
                      f"SELECT name FROM staff WHERE dept = '{dept}' ORDER BY salary DESC LIMIT 1")
        elif kind == "count":
            q, sql = f"How many people work in {dept}?", f"SELECT COUNT(*) FROM staff WHERE dept = '{dept}'"
        elif kind == "update":
            who, pay = rng.choice(names), rng.randint(30, 120) * 1000
            q, sql = f"Set the salary of {who} to {pay}.", f"UPDATE staff SET salary = {pay} WHERE name = '{who}'"
        else:
            who = rng.choice([n for n in NAMES if n not in names])
            pay = rng.randint(30, 120) * 1000
            q, sql = (f"Add {who} to {dept} with salary {pay}.",
                      f"INSERT INTO staff VALUES ('{who}', '{dept}', {pay})")
        return Task(self.name, "", kind, {"rows": rows, "question": q, "gold_sql": sql,
                                          "kind": "select" if kind in ("max", "count") else "change"})

    def new_env(self, task: Task) -> SqlEnv:
        return SqlEnv(task)

    def oracle_step(self, task: Task, messages: list[dict]) -> str:
        d = task.data
        done = assistant_turns(messages)
        if done == 0:
            return f"I will query the table.\nAction: Operation\n```sql\n{d['gold_sql']};\n```"
        if d["kind"] == "change":
            return 'The change is made.\nAction: Answer\nFinal Answer: ["done"]'
        values = sorted(_values(ast.literal_eval(messages[-1]["content"])))
        return f"The result is in.\nAction: Answer\nFinal Answer: {json.dumps(values)}"
