"""OfficeBench's gold policy: actions built from each subtask's `evaluation`, the ones that make the files, cells,
events and mails it checks, played through the harness like a model's replies.

Per evaluator: `evaluate_contain` on an ics writes events (DTSTART / DTEND keywords set the times, the other
keywords the summary; without times, the first free hour of the day for every user whose calendar must not
overlap), on email sends the keywords from the task's user, on `data/answer.txt` makes them the final answer, on
other documents writes them (docx: a paragraph; xlsx: a new row; pdf: a docx of the same name converted);
`evaluate_excel_cell_value` / `_comparator` set the cells (2 for a comparator); `evaluate_exact_match` on xlsx
sets every cell that differs from the reference and empties the rest; `evaluate_diff_contain_text` empties the
rows holding a keyword; `evaluate_file_exist` makes a missing file of its kind, `evaluate_file_not_exist` removes
one. `not_contain` and `calendar_no_overlap` need no action beyond avoiding what they forbid. The task's files are
read to plan (the oracle knows the reference), never written.
"""

from __future__ import annotations

import base64
import json
import posixpath
import re
from datetime import datetime, timedelta
from functools import lru_cache
from pathlib import Path

from arm_ray.benchmarks.officebench_eval import Where
from arm_ray.world.base import Task, assistant_turns

CELL_EDITS = 5  # more cell edits than this for one file, and the gold writes it whole from the shell
_DT = re.compile(r"^(DTSTART|DTEND):(\d{8}T\d{6})$")
FMT = "%Y-%m-%d %H:%M:%S"


def _sheet(path: Path) -> dict[tuple[int, int], object]:
    import openpyxl
    ws = openpyxl.load_workbook(path).active
    return {(c.row, c.column): c.value for row in ws.iter_rows() for c in row if c.value is not None}


def _events(path: Path) -> list[tuple[datetime, datetime]]:
    import icalendar
    if not path.is_file():
        return []
    out = []
    for c in icalendar.Calendar.from_ical(path.read_bytes()).walk():
        if c.name == "VEVENT" and c.get("dtstart") is not None and c.get("dtend") is not None:
            a, b = c.get("dtstart").dt, c.get("dtend").dt
            if isinstance(a, datetime) and isinstance(b, datetime):
                out.append((a.replace(tzinfo=None), b.replace(tzinfo=None)))
    return out


def _words(kw: list[str]) -> str:
    """Text for a document or a mail that the app's command line keeps as text (fire reads `5` as a number, which
    the word and email apps cannot write)."""
    from arm_ray.benchmarks.officebench_apps import fire_value
    text = " ".join(kw)
    return text if isinstance(fire_value(text), str) else text + " ."


class Planner:
    def __init__(self, spec: dict, task_dir: Path):
        self.spec, self.task_dir = spec, Path(task_dir)
        self.start = self.task_dir / "testbed"
        self.where = Where(self.start, self.start, self.task_dir)
        self.acts: list[dict] = []
        self.made: set[str] = set()
        self.rows: dict[str, int] = {}
        self.booked: dict[str, list[tuple[datetime, datetime]]] = {}
        self.answer = "None"
        self.mails = 0
        self.when = datetime.strptime(f"{spec['date']} {spec['time']}", "%Y-%m-%d %I:%M %p")
        self.no_overlap = [e["args"]["username"] for e in spec["evaluation"]
                           if e["function"] == "evaluate_calendar_no_overlap"]
        # a mail file the evaluation names (emails/<user>/<subject>.eml): the mail to that user has that subject
        self.subjects = {}
        for e in spec["evaluation"]:
            m = re.fullmatch(r"emails/([^/]+)/([^/]+)\.eml", self.rel(e["args"].get("file", "")))
            if m and e["function"] == "evaluate_file_exist":
                self.subjects.setdefault(m.group(1), m.group(2))
        # the task's user sends the gold mails, unless their own folder must not hold what is sent
        banned = {e["args"].get("username") for e in spec["evaluation"] if e["function"] == "evaluate_not_contain"
                  and e["args"].get("doc_type") == "email"}
        self.sender = None if spec["username"] in banned else spec["username"]

    # ---------------------------------------------------------------- helpers
    @staticmethod
    def rel(path: str) -> str:
        return posixpath.normpath(str(path)).lstrip("/")

    def path(self, rel: str) -> str:
        return "/testbed/" + self.rel(rel)

    def exists(self, rel: str) -> bool:
        return self.rel(rel) in self.made or (self.start / self.rel(rel)).exists()

    def add(self, app: str, action: str, **args) -> None:
        self.acts.append({"app": app, "action": action, **args})

    def parent(self, rel: str) -> None:
        d = posixpath.dirname(self.rel(rel))
        if d and not self.exists(d):
            self.add("shell", "command", command=f"mkdir -p {self.path(d)}")
            self.made.add(d)

    def ensure(self, rel: str, kind: str) -> None:
        rel = self.rel(rel)
        if self.exists(rel):
            return
        self.parent(rel)
        self.add(kind, "create_new_file", file_path=self.path(rel))
        self.made.add(rel)

    def next_row(self, rel: str) -> int:
        rel = self.rel(rel)
        if rel not in self.rows:
            start = self.start / rel
            self.rows[rel] = max((r for r, _ in _sheet(start)), default=0) if start.is_file() else 0
        self.rows[rel] += 1
        return self.rows[rel]

    def busy(self, user: str) -> list[tuple[datetime, datetime]]:
        return _events(self.start / "calendar" / f"{user}.ics") + self.booked.get(user, [])

    def free_hour(self, users: list[str]) -> datetime:
        days = sorted({a.date() for u in users for a, _ in self.busy(u)}) or [self.when.date()]
        day = datetime.combine(days[0], datetime.min.time())
        for hour in [*range(8, 21), *range(0, 8), *range(21, 24)]:
            a = day + timedelta(hours=hour)
            if all(not (a < y and x < a + timedelta(hours=1)) for u in users for x, y in self.busy(u)):
                return a
        return day

    def event(self, user: str, summary: str, start: datetime | None = None, end: datetime | None = None) -> None:
        if start is None:
            start = self.free_hour(list(dict.fromkeys([user, *self.no_overlap])))
        end = end or start + timedelta(hours=1)
        self.add("calendar", "create_event", user=user, summary=summary, time_start=start.strftime(FMT),
                 time_end=end.strftime(FMT))
        self.booked.setdefault(user, []).append((start, end))
        self.made.add(f"calendar/{user}.ics")

    # ---------------------------------------------------------------- per evaluator
    def contain(self, a: dict) -> None:
        kw, kind = [str(k) for k in a["keywords"]], a["doc_type"]
        if kind == "email":
            self.mail(a["username"], " ".join(kw))
            return
        rel = self.rel(a["file"])
        if rel == "data/answer.txt" and kind in ("txt", "ics"):  # both read the file as text
            self.answer = " ".join(kw) if self.answer == "None" else f"{self.answer} {' '.join(kw)}"
        elif kind == "ics" and rel.endswith(".ics"):
            times = {m.group(1): datetime.strptime(m.group(2), "%Y%m%dT%H%M%S") for k in kw if (m := _DT.match(k))}
            words = [k for k in kw if not _DT.match(k)]
            user = Path(rel).stem
            self.event(user, " ".join(words) or "Event", times.get("DTSTART"), times.get("DTEND"))
            if rel != f"calendar/{user}.ics":  # a calendar file elsewhere: the calendar app's file, copied there
                self.parent(rel)
                self.add("shell", "command", command=f"cp /testbed/calendar/{user}.ics {self.path(rel)}")
                self.made.add(rel)
        elif kind in ("txt", "ics"):
            self.parent(rel)
            self.add("shell", "command", command=f"echo '{' '.join(kw)}' >> {self.path(rel)}")
            self.made.add(rel)
        elif kind in ("doc", "docx"):
            self.ensure(rel, "word")
            self.add("word", "write_to_file", file_path=self.path(rel), contents=_words(kw))
        elif kind == "xlsx":
            self.ensure(rel, "excel")
            row = self.next_row(rel)
            for col, k in enumerate(kw, 1):
                self.add("excel", "set_cell", file_path=self.path(rel), row_idx=row, column_idx=col, text=k)
        elif kind == "pdf":
            self.pdf(rel, " ".join(kw))

    def mail(self, user: str, text: str) -> None:
        self.mails += 1
        subject = self.subjects.pop(user, None) or f"Update {self.mails}"
        self.add("email", "send_email", sender=self.sender or user, recipient=user, subject=subject,
                 content=_words([text]))

    def pdf(self, rel: str, text: str | None) -> None:
        """A pdf by converting a same-named docx or xlsx (made as a docx when there is none)."""
        stem = posixpath.splitext(rel)[0]
        src = next((stem + s for s in (".docx", ".xlsx") if self.exists(stem + s)), None)
        if src is None or (text is not None and src.endswith(".xlsx")):
            src = stem + ".docx"
            self.ensure(src, "word")
        if text is not None:
            self.add("word", "write_to_file", file_path=self.path(src), contents=_words([text]))
        app = "excel" if src.endswith(".xlsx") else "word"
        self.add(app, "convert_to_pdf", **{f"{app}_file_path": self.path(src), "pdf_file_path": self.path(rel)})
        self.made.add(rel)

    def cells(self, a: dict, comparator: bool) -> None:
        rel = self.rel(a["file"])
        self.ensure(rel, "excel")
        for m in a["matches"]:
            self.add("excel", "set_cell", file_path=self.path(rel), row_idx=int(m["row"]), column_idx=int(m["col"]),
                     text=2 if comparator else m["value"])

    def exact(self, a: dict) -> None:
        if a["doc_type"] != "xlsx":
            return  # doc / pdf: the official comparison can never pass; txt / ics: not in the tasks
        rel = self.rel(a["result_file"])
        have = _sheet(self.start / rel) if (self.start / rel).is_file() and rel not in self.made else {}
        want = _sheet(self.where(a["expected_file"]))
        sets = [(r, c, v) for (r, c), v in sorted(want.items()) if have.get((r, c)) != v]
        clears = sorted(set(have) - set(want))
        if len(sets) + len(clears) > CELL_EDITS:  # too many for the step limit: the shell writes the whole file
            self.parent(rel)
            data = base64.b64encode(self.where(a["expected_file"]).read_bytes()).decode()
            self.add("shell", "command", command=f"echo {data} | base64 -d > {self.path(rel)}")
            self.made.add(rel)
            return
        self.ensure(rel, "excel")
        for r, c, v in sets:
            self.add("excel", "set_cell", file_path=self.path(rel), row_idx=r, column_idx=c, text=v)
        for (r, c) in clears:
            self.add("excel", "delete_cell", file_path=self.path(rel), row_idx=r, column_idx=c)

    def diff(self, a: dict) -> None:
        if a["doc_type"] != "xlsx":
            return
        before, out = _sheet(self.where(a["input_file"])), self.rel(a["output_file"])
        rows = sorted({r for (r, _), v in before.items() if any(str(k) in str(v) for k in a["keywords"])})
        for (r, c) in sorted(k for k in before if k[0] in rows):
            self.add("excel", "delete_cell", file_path=self.path(out), row_idx=r, column_idx=c)

    def exist(self, a: dict) -> None:
        rel = self.rel(a["file"])
        if self.exists(rel):
            return
        suffix = posixpath.splitext(rel)[1].lower()
        mail = re.fullmatch(r"emails/([^/]+)/([^/]+)\.eml", rel)
        if mail:
            self.subjects[mail.group(1)] = mail.group(2)
            self.mail(mail.group(1), "Hello")
            self.made.add(rel)
        elif rel.startswith("calendar/") and suffix == ".ics":
            self.event(Path(rel).stem, "Event")
        elif suffix == ".xlsx":
            self.ensure(rel, "excel")
        elif suffix in (".docx", ".doc"):
            self.ensure(rel, "word")
        elif suffix == ".pdf":
            self.pdf(rel, None)
        elif suffix in (".png", ".jpg", ".jpeg") and self.exists(posixpath.splitext(rel)[0] + ".pdf"):
            self.add("pdf", "convert_to_image", pdf_file_path=self.path(posixpath.splitext(rel)[0] + ".pdf"),
                     image_file_path=self.path(rel))
            self.made.add(rel)
        elif suffix:
            self.parent(rel)
            self.add("shell", "command", command=f"touch {self.path(rel)}")
            self.made.add(rel)
        else:
            self.add("shell", "command", command=f"mkdir -p {self.path(rel)}")
            self.made.add(rel)

    def build(self) -> tuple[list[dict], str]:
        for e in self.spec["evaluation"]:
            try:
                self.entry(e["function"], e["args"])
            except (KeyError, FileNotFoundError):
                if "fault" not in self.spec:  # a known fault of the task file (officebench.KNOWN_FAULTS) is skipped
                    raise
        return self.acts, self.answer

    def entry(self, fn: str, a: dict) -> None:
        if fn == "evaluate_contain":
            self.contain(a)
        elif fn in ("evaluate_excel_cell_value", "evaluate_excel_cell_comparator"):
            self.cells(a, fn.endswith("comparator"))
        elif fn == "evaluate_exact_match":
            self.exact(a)
        elif fn == "evaluate_diff_contain_text":
            self.diff(a)
        elif fn == "evaluate_file_exist":
            self.exist(a)
        elif fn == "evaluate_file_not_exist" and (self.start / self.rel(a["file"])).exists():
            self.add("shell", "command", command=f"rm -rf {self.path(a['file'])}")


@lru_cache(maxsize=4096)
def _script(task_dir: str, spec_json: str) -> tuple[str, ...]:
    """The whole episode as actions (app switches included, `finish_task` last), each as a JSON text."""
    acts, answer = Planner(json.loads(spec_json), Path(task_dir)).build()
    out, app = [], None
    for a in acts:
        if a["app"] != app:
            out.append({"app": "system", "action": "switch_app", "target_app": a["app"]})
            app = a["app"]
        out.append(a)
    out.append({"app": "system", "action": "finish_task", "answer": answer})
    return tuple(json.dumps(a) for a in out)


def plan(task: Task) -> list[dict]:
    return [json.loads(a) for a in _script(task.data["task_dir"], json.dumps(task.data["spec"], sort_keys=True))]


def render(action: dict, variant: str) -> str:
    """A reply in the harness's own layout: a Python dict (official) or SIMIA's think / answer pair."""
    if variant == "simia":
        return f"<think> Next step: {action['action']}. </think>\n<answer> {json.dumps(action)} </answer>"
    return repr(action)


def gold_reply(task: Task, messages: list[dict], variant: str) -> str:
    steps = plan(task)
    return render(steps[min(assistant_turns(messages), len(steps) - 1)], variant)


def nothing_reply(variant: str) -> str:
    """The do-nothing agent: finish at once."""
    return render({"app": "system", "action": "finish_task", "answer": "None"}, variant)


__all__ = ["Planner", "gold_reply", "nothing_reply", "plan", "render"]
