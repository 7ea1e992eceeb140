"""office: mirrors OfficeBench in its SIMIA form.

Each step the agent writes `<think>…</think><answer>{"app": …, "action": …}</answer>`.
Apps (calendar, email, excel, word) keep their state as files in a per-task
temporary directory; the agent must `switch_app` before using an app and ends
with `finish_task`. Five identical actions in a row end the episode as stuck.
The evaluator reads the files: events, sent mail, sheet cells, documents.
Tasks use 1, 2 or 3 apps.
"""

from __future__ import annotations

import csv
import json
import random
import shutil
import tempfile
from pathlib import Path

from arm_ray.roles.parsers import officebench as find_answers
from arm_ray.world.base import Env, Start, StepResult, Task, assistant_turns
from arm_ray.world.demos import WorldSuite

APPS = ("calendar", "email", "excel", "word")
PEOPLE = ["alice", "bob", "carol", "dave", "erin", "frank", "grace", "heidi", "ivan", "judy"]
TOPICS = ["budget", "launch", "hiring", "offsite", "review", "roadmap", "training", "audit", "demo", "retro"]

SYSTEM = ("You are an office assistant with apps: calendar (create_event: title, date, time), "
          "email (send_email: to, subject, body), excel (read_cell / write_cell: file, cell, value), "
          "word (read_file / write_file: file, text). Switch with {\"app\": \"system\", \"action\": "
          "\"switch_app\", \"target_app\": ...}; end with {\"app\": \"system\", \"action\": \"finish_task\"}. "
          "Each turn: <think>your plan</think><answer>one JSON action</answer>.")
STUCK_AFTER = 5


def answer_text(think: str, action: dict) -> str:
    return f"<think>{think}</think><answer>{json.dumps(action, ensure_ascii=False)}</answer>"


class OfficeEnv(Env):
    def reset(self) -> Start:
        root = Path(tempfile.mkdtemp(prefix="arm-office-"))
        self.state = {"root": str(root), "app": None, "history": []}
        for name, rows in self.task.data.get("sheets", {}).items():
            with (root / name).open("w", newline="") as f:
                csv.writer(f).writerows(rows)
        for name, text in self.task.data.get("docs", {}).items():
            (root / name).write_text(text, encoding="utf-8")
        (root / "calendar.json").write_text("[]")
        (root / "sent.json").write_text("[]")
        return Start([{"role": "system", "content": SYSTEM}, {"role": "user", "content": self.task.data["request"]}])

    def step(self, action_text: str) -> StepResult:
        spans = find_answers(action_text)
        raw = action_text[spans[0][0]: spans[0][1]] if spans else ""
        history = self.state["history"]
        history.append(raw)
        if len(history) >= STUCK_AFTER and len(set(history[-STUCK_AFTER:])) == 1:
            return StepResult([_obs("The same action five times in a row: stuck.")], done=True, finish_reason="stuck")
        body = raw.removeprefix("<answer>").removesuffix("</answer>").strip()
        try:
            action = json.loads(body)
            if not isinstance(action, dict):
                raise TypeError("an action is a JSON object")
            app, name = action["app"], action["action"]
        except (ValueError, KeyError, TypeError) as err:
            return StepResult([_obs(f"Error: no valid JSON action in <answer> ({err})")], invalid=True)
        if app == "system" and name == "finish_task":
            return StepResult([_obs("Task finished.")], done=True, finish_reason="finish")
        if app == "system" and name == "switch_app":
            target = action.get("target_app")
            if target not in APPS:
                return StepResult([_obs(f"Error: unknown app {target!r}")], invalid=True)
            self.state["app"] = target
            return StepResult([_obs(f"Switched to {target}.")])
        if app != self.state["app"]:
            return StepResult([_obs(f"Error: switch to {app} first")], invalid=True)
        handler = getattr(self, f"_{app}_{name}", None)
        if handler is None:
            return StepResult([_obs(f"Error: {app} has no action {name!r}")], invalid=True)
        args = {k: v for k, v in action.items() if k not in ("app", "action")}
        try:
            return StepResult([_obs(handler(**args))])
        except (TypeError, ValueError, OSError) as err:
            # file names relative to the workspace: its temporary path differs per episode and would make the
            # next prompt (and so a sampled rollout) depend on it
            text = str(err)
            for root in {str(Path(self.state["root"]).resolve()), self.state["root"]}:
                text = text.replace(root + "/", "")
            return StepResult([_obs(f"Error: {app}.{name} failed ({text})")], invalid=True)

    # --- apps: files in the task directory -------------------------------------------------------------
    def _path(self, file: str) -> Path:
        p = (Path(self.state["root"]) / file).resolve()
        if p.parent != Path(self.state["root"]).resolve():
            raise ValueError(f"{file!r} is outside the workspace")
        return p

    def _append(self, name: str, item: dict) -> None:
        p = Path(self.state["root"]) / name
        items = json.loads(p.read_text())
        items.append(item)
        p.write_text(json.dumps(items))

    def _calendar_create_event(self, title: str, date: str, time: str) -> str:
        self._append("calendar.json", {"title": title, "date": date, "time": time})
        return f"Event '{title}' created on {date} at {time}."

    def _email_send_email(self, to: str, subject: str, body: str) -> str:
        self._append("sent.json", {"to": to, "subject": subject, "body": body})
        return f"Email sent to {to}."

    def _excel_read_cell(self, file: str, cell: str) -> str:
        rows = list(csv.reader(self._path(file).open(newline="")))
        r, c = _cell(cell)
        return rows[r][c] if r < len(rows) and c < len(rows[r]) else ""

    def _excel_write_cell(self, file: str, cell: str, value) -> str:
        p = self._path(file)
        rows = list(csv.reader(p.open(newline=""))) if p.exists() else []
        r, c = _cell(cell)
        while len(rows) <= r:
            rows.append([])
        rows[r] += [""] * (c + 1 - len(rows[r]))
        rows[r][c] = str(value)
        with p.open("w", newline="") as f:
            csv.writer(f).writerows(rows)
        return f"{file} {cell} = {value}"

    def _word_read_file(self, file: str) -> str:
        return self._path(file).read_text(encoding="utf-8")

    def _word_write_file(self, file: str, text: str) -> str:
        self._path(file).write_text(str(text), encoding="utf-8")
        return f"Wrote {file}."

    def reward(self) -> float:
        root = Path(self.state["root"])
        events = json.loads((root / "calendar.json").read_text())
        sent = json.loads((root / "sent.json").read_text())
        for check in self.task.data["checks"]:
            kind = check["kind"]
            if kind == "event" and check["event"] not in events:
                return 0.0
            if kind == "email" and not any(m["to"] == check["to"] and m["subject"] == check["subject"]
                                           and check["body"] in m["body"] for m in sent):
                return 0.0
            if kind == "cell":
                try:
                    value = self._excel_read_cell(check["file"], check["cell"])
                except OSError:
                    return 0.0
                if value != check["value"]:
                    return 0.0
            if kind == "doc":
                p = root / check["file"]
                if not p.is_file() or p.read_text(encoding="utf-8").strip() != check["text"]:
                    return 0.0
        return 1.0

    def close(self) -> None:
        if self.state.get("root"):
            shutil.rmtree(self.state["root"], ignore_errors=True)


def _cell(ref: str) -> tuple[int, int]:
    ref = str(ref).strip().upper()
    if len(ref) < 2 or not ref[0].isalpha() or not ref[1:].isdigit():
        raise ValueError(f"bad cell {ref!r} (expected like B2)")
    return int(ref[1:]) - 1, ord(ref[0]) - ord("A")


def _obs(text: str) -> dict:
    return {"role": "user", "content": f"Observation: {text}"}


class OfficeSuite(WorldSuite):
    name = "office"
    parser = "officebench"
    max_steps = 10

    def _make_task(self, rng: random.Random, index: int) -> Task:
        n_apps = rng.choice([1, 1, 2, 2, 3])
        topic, who = rng.choice(TOPICS), rng.choice(PEOPLE)
        date = f"2025-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}"
        time = f"{rng.randint(8, 17):02d}:{rng.choice(['00', '30'])}"
        amount = str(rng.randint(100, 9999))
        sheet = f"{topic}.csv"
        sheets = {sheet: [["item", "amount"], [topic, amount]]}
        data = {"sheets": sheets, "docs": {}, "checks": []}
        if n_apps == 1:
            sub = rng.choice(["event", "cell", "doc"])
            if sub == "event":
                data["request"] = f"Create a calendar event '{topic} meeting' on {date} at {time}."
                data["plan"] = [("calendar", {"action": "create_event", "title": f"{topic} meeting", "date": date,
                                              "time": time})]
                data["checks"] = [{"kind": "event", "event": {"title": f"{topic} meeting", "date": date,
                                                              "time": time}}]
            elif sub == "cell":
                data["request"] = f"In {sheet}, set cell B2 to {amount}."
                sheets[sheet][1][1] = "0"
                data["plan"] = [("excel", {"action": "write_cell", "file": sheet, "cell": "B2", "value": amount})]
                data["checks"] = [{"kind": "cell", "file": sheet, "cell": "B2", "value": amount}]
            else:
                text = f"Notes for the {topic} with {who}."
                data["request"] = f"Write '{text}' to {topic}.txt."
                data["plan"] = [("word", {"action": "write_file", "file": f"{topic}.txt", "text": text})]
                data["checks"] = [{"kind": "doc", "file": f"{topic}.txt", "text": text}]
        else:
            # read the amount from the sheet, then use it in one or two other apps
            subject = f"{topic} amount"
            data["request"] = f"Read the amount in B2 of {sheet} and email it to {who}@corp.com with subject '{subject}'."
            data["plan"] = [("excel", {"action": "read_cell", "file": sheet, "cell": "B2"}),
                            ("email", {"action": "send_email", "to": f"{who}@corp.com", "subject": subject,
                                       "body": "{value}"})]
            data["checks"] = [{"kind": "email", "to": f"{who}@corp.com", "subject": subject, "body": amount}]
            if n_apps == 3:
                data["request"] += f" Also write the amount to {topic}.txt."
                data["plan"].append(("word", {"action": "write_file", "file": f"{topic}.txt", "text": "{value}"}))
                data["checks"].append({"kind": "doc", "file": f"{topic}.txt", "text": amount})
        return Task(self.name, "", f"{n_apps}-app", data)

    def new_env(self, task: Task) -> OfficeEnv:
        return OfficeEnv(task)

    def oracle_step(self, task: Task, messages: list[dict]) -> str:
        # the plan, each app step preceded by a switch; {value} is the last cell read
        steps = []
        for app, action in task.data["plan"]:
            steps.append(("system", {"action": "switch_app", "target_app": app}, f"I need the {app} app."))
            steps.append((app, action, f"Use {app} to {action['action'].replace('_', ' ')}."))
        steps.append(("system", {"action": "finish_task"}, "Everything is done."))
        done = assistant_turns(messages)
        app, action, think = steps[done]
        value = ""
        for i, m in enumerate(messages):
            if m["role"] == "assistant" and '"read_cell"' in m["content"] and i + 1 < len(messages):
                value = messages[i + 1]["content"].removeprefix("Observation: ")
        action = {k: (v.replace("{value}", value) if isinstance(v, str) else v) for k, v in action.items()}
        return answer_text(think, {"app": app, **action})
