"""AgentBench v0.2 DB-bench's own tasks on a real MariaDB server (`suite: agentbench_db`, out of domain).

The tasks are read from a clone of AgentBench at branch v0.2 (option `data_dir`: the clone's root, which holds
`data/dbbench/standard.jsonl`, 300 tasks, and `dev.jsonl`, 60). The protocol and scoring are the official
harness's (`src/server/tasks/dbbench/__init__.py` there):

- the conversation opens with the instructions (a user turn), the agent's "Ok.", then the task's description and
  its `add_description` (the table's name and headers);
- a reply whose first `Action: <word>` line says `Operation` runs the first ```sql block (newlines made spaces) and
  gets the raw result back, cut at 800 characters; any other reply ends the episode, its answer being the text after
  a line-initial `Final Answer:`. `max_round` operations at most (15, the official config's); the reply after the
  last one is only read for its answer. Text inside `<think>` is blanked first, as the roles layer does;
- write tasks (INSERT, UPDATE) score 1 when the md5 over the table's rows equals the task's `answer_md5`, whatever
  the agent answered; read tasks compare the answer list with the `label` as the official checker does (one value:
  as numbers if both parse, else as text; several: as sets).

Each episode gets a database of its own on the suite's server (the table keeps its official name), so episodes
run at once. Where this differs from the official harness: MariaDB instead of MySQL 8 (see `mariadb.py`); every
statement is committed; an error reads `<errno>: <message>` (PyMySQL keeps no SQLSTATE); answers are read with
`ast.literal_eval`, not `eval`; a statement runs at most `statement_timeout_s`.
"""

from __future__ import annotations

import ast
import itertools
import json
import re
import threading
from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator

from arm_ray.benchmarks.mariadb import Server, client
from arm_ray.errors import ConfigError
from arm_ray.roles.parsers import blank_think
from arm_ray.suites import SuiteOptions
from arm_ray.world.base import Env, Start, StepResult, Suite, Task, assistant_turns, check_split, round_robin, split_map

WRITES = ("INSERT", "DELETE", "UPDATE")
OUTPUT_CHARS = 800  # the official cut of a result shown to the agent
NO_RESULT = "No result set to fetch from."  # what the official client says after a statement that returns no rows
DEFAULT_SPLITS = {"test": "standard", "dev": "dev", "calibration": "dev", "train": "dev"}

# The instructions, in our words; the action formats are the official ones.
PROMPT = """I will ask you a question about a table in a MySQL database, and you will help me answer it by running SQL.
Explain the problem and your plan, and write down your reasoning. After thinking it through, in each round you
either operate or answer.
To operate, write:
Action: Operation
```sql
SELECT * FROM table WHERE condition;
```
The SQL goes in a markdown sql block with nothing else in it, on one line. One statement runs per round: the one
in the first sql block. I run it and show you the raw MySQL output, which you interpret yourself.
When you are done and want to give your final answer, write:
Action: Answer
Final Answer: ["ANSWER1", "ANSWER2", ...]
Write this only when you are sure: the answer must be exactly the correct one. If the question asks you to change
the database, the answer can be anything once the change is made.
A reply that matches neither pattern fails the task at once."""

_ACTION = re.compile(r"Action: (.*?)\n")
_SQL = re.compile(r"```sql\n([\s\S]*?)\n```")
_FINAL = re.compile(r"\nFinal Answer:(.*)")


class DBBenchOptions(SuiteOptions):
    data_dir: str = Field(description="root of an AgentBench clone at branch v0.2 (holds data/dbbench/)")
    splits: dict[str, str] = Field(default_factory=lambda: dict(DEFAULT_SPLITS),
                                   description="our split -> a file of data/dbbench/ without .jsonl (standard, dev)")
    max_round: int = Field(15, gt=0, description="operations per episode (the official config's 15)")
    statement_timeout_s: float = Field(10.0, gt=0, description="longest a statement may run")
    order: Literal["mixed", "file"] = Field("mixed", description="mixed: task types in turn, so the first n tasks "
                                            "hold every type (the files list reads, then writes); file: as listed")

    @field_validator("splits")
    @classmethod
    def _our_splits(cls, splits: dict[str, str]) -> dict[str, str]:
        return split_map(splits, DEFAULT_SPLITS)


def load_tasks(path: Path) -> list[dict]:
    """The official task file, each entry checked for what the episode and the checker read."""
    if not path.is_file():
        raise ConfigError(f"options.data_dir: {path} does not exist; data_dir is the root of an AgentBench v0.2 "
                          f"clone (git clone -b v0.2 https://github.com/THUDM/AgentBench)")
    tasks = []
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            e = json.loads(line)
            table = e["table"]
            ok = (isinstance(e["description"], str) and isinstance(e["type"], list) and e["type"]
                  and isinstance(table["table_name"], str) and table["table_info"]["columns"]
                  and isinstance(table["table_info"]["rows"], list) and isinstance(e["label"], list))
            if ok and e["type"][0] in WRITES:
                ok = isinstance(e["answer_md5"], str)
        except (json.JSONDecodeError, KeyError, TypeError) as err:
            raise ConfigError(f"{path}:{n}: not a DB-bench task ({type(err).__name__}: {err})") from None
        if not ok:
            raise ConfigError(f"{path}:{n}: a DB-bench task needs description, type [..], label [..], "
                              f"table.table_name, table.table_info.columns/rows (and answer_md5 for writes)")
        tasks.append(e)
    return tasks


def error_text(err: Exception) -> str:
    """A server error as the agent reads it: `<errno>: <message>`."""
    return f"{err.args[0]}: {err.args[-1]}" if len(err.args) == 2 else str(err)


def quote(name: str) -> str:
    return "`" + name.replace("`", "``") + "`"


def table_md5_sql(entry: dict) -> str:
    """The official checker's query: md5 over the sorted first 5 hex digits of each row's md5."""
    cols = ",".join(quote(c["name"]) for c in entry["table"]["table_info"]["columns"])
    return (f"select md5(group_concat(rowhash order by rowhash)) as hash from( SELECT substring(MD5(CONCAT_WS(',', "
            f"{cols})), 1, 5) AS rowhash FROM {quote(entry['table']['table_name'])}) as sub;")


def read_answer(text: str):
    """The answer as the official checker reads it: a Python literal made a list, else the text as one value."""
    try:
        return list(ast.literal_eval(text.strip()))
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
        return [text]


def answer_matches(answer: str, label: list) -> bool:
    """The official read-task comparison."""
    ans = read_answer(answer)
    if len(ans) == 1 and len(label) == 1:
        try:
            return float(ans[0]) == float(label[0])
        except (ValueError, TypeError):
            return ans[0] == label[0]
    try:
        return set(ans) == set(label)
    except TypeError:  # an unhashable value in either list
        return False


def parse_reply(text: str, rounds: int, max_round: int) -> tuple[str, str | None]:
    """("operation", sql), ("answer", text after `Final Answer:`), ("invalid", None) or ("limit", None)."""
    visible = blank_think(text)
    action = _ACTION.search(visible)
    if action and action.group(1) == "Operation" and rounds < max_round:
        block = _SQL.search(visible)
        return ("operation", block.group(1).strip().replace("\n", " ")) if block else ("invalid", None)
    final = _FINAL.search(visible)
    if final:
        return "answer", final.group(1)
    return ("limit" if rounds >= max_round else "invalid"), None


class DBBenchEnv(Env):
    def __init__(self, task: Task, suite: "AgentBenchDB"):
        super().__init__(task)
        self.suite, self.entry = suite, task.data["entry"]
        self.con, self.rounds, self.answer, self.init_error = None, 0, None, None

    def reset(self) -> Start:
        e = self.entry
        self.database = self.suite.new_database()
        self.con = self.suite.server.connect()
        table, info = e["table"]["table_name"], e["table"]["table_info"]
        cols = [quote(c["name"]) for c in info["columns"]]
        with self.con.cursor() as cur:
            cur.execute(f"CREATE DATABASE {quote(self.database)}")
            cur.execute(f"USE {quote(self.database)}")
            cur.execute(f"SET SESSION max_statement_time = {self.suite.options.statement_timeout_s}")
        # the official set-up, each row with as many values as it has; where the server refuses a step (a
        # column name twice, a row of another width) the episode goes on without it, as it does there
        rows = ",".join("(" + ",".join(["%s"] * len(r)) + ")" for r in info["rows"])
        for sql, args in [(f"CREATE TABLE {quote(table)} ({','.join(c + ' TEXT' for c in cols)})", None),
                          (f"INSERT INTO {quote(table)} ({','.join(cols)}) VALUES ".replace("%", "%%") + rows,
                           [v for r in info["rows"] for v in r])]:
            try:
                with self.con.cursor() as cur:
                    cur.execute(sql, args)
            except client().MySQLError as err:
                self.init_error = error_text(err)
                break
        return Start([{"role": "user", "content": PROMPT}, {"role": "assistant", "content": "Ok."},
                      {"role": "user", "content": e["description"] + "\n" + e.get("add_description", "")}])

    def step(self, action_text: str) -> StepResult:
        kind, value = parse_reply(action_text, self.rounds, self.suite.options.max_round)
        if kind == "operation":
            self.rounds += 1
            return StepResult([{"role": "user", "content": self.execute(value)}])
        if kind == "answer":
            self.answer = value
            return StepResult([], done=True, finish_reason="answer")
        return StepResult([], done=True, invalid=kind == "invalid", finish_reason=kind)

    def execute(self, sql: str) -> str:
        pymysql = client()
        try:
            with self.con.cursor() as cur:
                cur.execute(sql)
                out = str(list(cur.fetchall())) if cur.description is not None else NO_RESULT
        except pymysql.MySQLError as e:
            out = error_text(e)
        return out[:OUTPUT_CHARS] + "[TRUNCATED]" if len(out) > OUTPUT_CHARS else out

    def table_md5(self) -> str:
        return self.execute(table_md5_sql(self.entry))

    def reward(self) -> float:
        if self.entry["type"][0] in WRITES:  # the table is checked whatever the agent answered
            return float(self.table_md5() == self.entry["answer_md5"])
        return float(answer_matches(self.answer or "", self.entry["label"]))

    def details(self) -> dict:
        return {"type": self.entry["type"][0], "answer": self.answer, "operations": self.rounds,
                **({"init_error": self.init_error} if self.init_error else {})}

    def close(self) -> None:
        if self.con is not None:
            try:
                with self.con.cursor() as cur:
                    cur.execute(f"DROP DATABASE IF EXISTS {quote(self.database)}")
            finally:
                self.con.close()
                self.con = None


class AgentBenchDB(Suite):
    name = "agentbench_db"
    parser = "dbbench"
    path_options = ("data_dir",)

    def __init__(self, **options):
        self.options = DBBenchOptions.model_validate(options)
        self.max_steps = self.options.max_round + 1  # the reply after the last operation is read for its answer
        self.server = Server()
        self._files: dict[str, list[dict]] = {}
        self._ids = itertools.count()
        self._lock = threading.Lock()

    def file(self, name: str) -> list[dict]:
        if name not in self._files:
            self._files[name] = load_tasks(Path(self.options.data_dir) / "data" / "dbbench" / f"{name}.jsonl")
        return self._files[name]

    def tasks(self, split: str, n: int | None = None) -> list[Task]:
        check_split(split)
        name = self.options.splits[split]
        entries = list(enumerate(self.file(name)))
        if self.options.order == "mixed":
            entries = round_robin(entries, key=lambda e: e[1]["type"][0])
        return [Task(self.name, f"dbbench-{name}-{i}", e["type"][0], {"file": name, "index": i, "entry": e})
                for i, e in entries[:n]]

    def _signature(self, task: Task) -> str:
        return f"{task.data['file']}:{task.data['index']}"

    def check(self) -> None:
        """Before any rollout: the task files of every split read and checked, and the server starts."""
        for name in dict.fromkeys(self.options.splits.values()):
            self.file(name)
        self.server.start()

    def new_database(self) -> str:
        with self._lock:
            return f"episode_{next(self._ids)}"

    def make_env(self, task: Task) -> DBBenchEnv:
        self.server.start()  # already running after check(); started here for callers that skip it
        return DBBenchEnv(task, self)

    def oracle_step(self, task: Task, messages: list[dict]) -> str:
        """Gold replay: a write task's `label` statements, then an answer; a read task answers its `label`."""
        e, done = task.data["entry"], assistant_turns(messages) - 1  # the opening "Ok." is not the agent's
        if e["type"][0] in WRITES and done < len(e["label"]):
            sql = e["label"][done].strip().replace("\n", " ")
            return f"The table needs this change.\nAction: Operation\n```sql\n{sql}\n```"
        answer = json.dumps(e["label"], ensure_ascii=False) if e["type"][0] not in WRITES else '["done"]'
        return f"That answers the question.\nAction: Answer\nFinal Answer: {answer}"

    def close(self) -> None:
        self.server.stop()
