"""OfficeBench's evaluators, function by function as `utils/evaluate.py` of the official harness (zlwang-cs/OfficeBench
4434746) defines them; `variant="simia"` takes the SIMIA copy's changes (zerowsw/Simia-WM-Exp 867bb63).

A subtask passes when every entry of its `evaluation` list passes; an evaluator that raises fails its subtask, as
`evaluation.py` catches it. Paths in the arguments are relative to the finished episode's testbed; the official
layout puts that testbed at `tasks/<task>/outputs/<subtask>/<run>/testbed`, so `../../../../cache/<subtask>/testbed/…`
is the testbed as the episode started and `../../../../reference/…` the task's reference files (SIMIA rewrites
both to its own copies of the same files).

Semantics kept, faults included:
- `evaluate_contain`: the document's text, lower-cased, must hold every keyword (lower-cased); a keyword that reads
  as a number first removes the text's commas (for the keywords after it too). xlsx reads as `(row, col): value\\t`
  cells, txt/ics as the raw file, doc/docx as paragraphs joined by newlines, pdf as PyPDF2's text;
- `evaluate_exact_match` with doc or pdf compares the readers' objects (paragraph lists, page lists), which are never
  equal: it fails whatever the files hold. `evaluate_diff_contain_text` with doc fails the same way;
- `evaluate_excel_cell_comparator` reads a cell's value with `\\w+` before a tab (official), `[^\\t\\n]+` (SIMIA).
Where this differs: the official `list_emails` reads `/testbed/emails/<user>` whatever testbed it is given (on the
evaluating host that folder does not exist, so no email check could pass) and its fallback for a user folder named
otherwise loops over an undefined name; both harnesses' intent, which SIMIA's copy implements, is used for both.
"""

from __future__ import annotations

import difflib
import posixpath
import re
from datetime import timezone
from pathlib import Path

from arm_ray.benchmarks.officebench_apps import excel_text, list_emails, pdf_text, word_paragraphs

CONTAIN_TYPES = ("email", "xlsx", "txt", "ics", "doc", "docx", "pdf")
DIFF_TYPES = ("xlsx", "doc")
EXACT_TYPES = ("xlsx", "txt", "ics", "doc", "pdf")


class Where:
    """The finished episode's files, addressed as the official evaluation addresses them."""

    def __init__(self, testbed: Path, start: Path, task_dir: Path):
        self.testbed, self.start, self.task_dir = Path(testbed), Path(start), Path(task_dir)

    def __call__(self, rel: str) -> Path:
        out = "t/outputs/s/run/testbed"
        p = posixpath.normpath(posixpath.join(out, str(rel)))
        if p == out or p.startswith(out + "/"):
            return self.testbed / p[len(out) + 1:]
        m = re.match(r"t/cache/[^/]+/testbed(?:/(.*))?$", p)
        if m:
            return self.start / (m.group(1) or "")
        if p.startswith("t/"):
            return self.task_dir / p[2:]
        raise ValueError(f"path {rel!r} leaves the task's folder")


def _is_number(s: str) -> bool:
    try:
        float(s)
        return True
    except ValueError:
        return False


def _contain_text(content: str, keywords: list) -> bool:
    content = content.lower()
    for keyword in keywords:
        keyword = str(keyword).lower()
        if _is_number(keyword):
            content = content.replace(",", "")
        if keyword not in content:
            return False
    return True


def _read(path: Path, doc_type: str) -> str:
    if doc_type == "xlsx":
        return excel_text(path)
    if doc_type in ("txt", "ics"):
        return path.read_text()
    if doc_type in ("doc", "docx"):
        return "\n".join(word_paragraphs(path))
    if doc_type == "pdf":
        return pdf_text(path)
    raise AssertionError(f"Not implemented doc type: {doc_type}")


def _emails(where: Where, username: str) -> str:
    root = where.testbed / "emails"
    if (root / username).exists():
        return list_emails(root / username, -1)
    if (root / username.lower()).exists():
        return list_emails(root / username.lower(), -1)
    for account in sorted(root.glob("*")):
        if username.lower() in account.name.lower():
            return list_emails(account, -1)
    return ""


def evaluate_contain(where: Where, args: dict, variant: str = "official") -> bool:
    if args["doc_type"] == "email":
        return _contain_text(_emails(where, args["username"]), args["keywords"])
    path = where(args["file"])
    if not path.is_file():
        return False
    return _contain_text(_read(path, args["doc_type"]), args["keywords"])


def evaluate_not_contain(where: Where, args: dict, variant: str = "official") -> bool:
    return not evaluate_contain(where, args, variant)


def evaluate_file_exist(where: Where, args: dict, variant: str = "official") -> bool:
    return where(args["file"]).exists()


def evaluate_file_not_exist(where: Where, args: dict, variant: str = "official") -> bool:
    return not where(args["file"]).exists()


def evaluate_diff_contain_text(where: Where, args: dict, variant: str = "official") -> bool:
    if args["doc_type"] != "xlsx":  # doc: lists of paragraph objects, unequal, then `.split` on a list raises
        return False
    before, after = excel_text(where(args["input_file"])), excel_text(where(args["output_file"]))
    if before == after:
        return False
    diff = "\n".join(difflib.unified_diff(before.split("\n"), after.split("\n"), n=0))
    return all(k in diff for k in args["keywords"])


def evaluate_excel_cell_value(where: Where, args: dict, variant: str = "official") -> bool:
    path = where(args["file"])
    if not path.exists():
        return False
    content = excel_text(path)
    return all(f"({m['row']}, {m['col']}): {m['value']}" in content for m in args["matches"])


def evaluate_excel_cell_comparator(where: Where, args: dict, variant: str = "official") -> bool:
    content = excel_text(where(args["file"]))
    value_re = r"([^\t\n]+)[\t\n]" if variant == "simia" else r"(\w+)\t"
    for m in args["matches"]:
        found = re.search(r"\({}, {}\): ".format(m["row"], m["col"]) + value_re, content)
        # the task's own lambda text, with no builtins in reach
        if not found or not eval(m["comparator"], {"__builtins__": {}})(found.group(1)):  # noqa: S307
            return False
    return True


def _aware(dt):
    return dt.replace(tzinfo=timezone.utc) if dt.tzinfo is None else dt


def evaluate_calendar_no_overlap(where: Where, args: dict, variant: str = "official") -> bool:
    import icalendar
    path = where.testbed / "calendar" / f"{args['username']}.ics"
    cal = icalendar.Calendar.from_ical(path.read_bytes())
    cal.subcomponents.sort(key=lambda c: _aware(c.get("dtstart").dt))
    events = [c for c in cal.walk() if c.name == "VEVENT"]
    return all(_aware(a.get("dtend").dt) <= _aware(b.get("dtstart").dt) for a, b in zip(events, events[1:]))


def evaluate_exact_match(where: Where, args: dict, variant: str = "official") -> bool:
    import openpyxl
    result = where(args["result_file"])
    if not result.exists():
        return False
    expected, doc_type = where(args["expected_file"]), args["doc_type"]
    if doc_type != "xlsx":
        if doc_type in ("txt", "ics"):
            return result.read_text() == expected.read_text()
        if doc_type in ("doc", "pdf"):  # the readers' objects: never equal
            return False
        raise AssertionError(f"Not implemented doc type: {doc_type}")
    got, want = openpyxl.load_workbook(result).active, openpyxl.load_workbook(expected).active
    for a, b in ((got, want), (want, got)):
        for row in a.iter_rows():
            for cell in row:
                if cell.value != b.cell(row=cell.row, column=cell.column).value:
                    return False
    return True


EVALUATORS = {f.__name__: f for f in (
    evaluate_contain, evaluate_not_contain, evaluate_file_exist, evaluate_file_not_exist, evaluate_diff_contain_text,
    evaluate_excel_cell_value, evaluate_excel_cell_comparator, evaluate_calendar_no_overlap, evaluate_exact_match)}
# the arguments each reads (checked when the tasks load)
REQUIRED = {
    "evaluate_contain": ("doc_type", "keywords"), "evaluate_not_contain": ("doc_type", "keywords"),
    "evaluate_file_exist": ("file",), "evaluate_file_not_exist": ("file",),
    "evaluate_diff_contain_text": ("doc_type", "input_file", "output_file", "keywords"),
    "evaluate_excel_cell_value": ("file", "matches"), "evaluate_excel_cell_comparator": ("file", "matches"),
    "evaluate_calendar_no_overlap": ("username",),
    "evaluate_exact_match": ("doc_type", "result_file", "expected_file"),
}
DOC_TYPES = {"evaluate_contain": CONTAIN_TYPES, "evaluate_not_contain": CONTAIN_TYPES,
             "evaluate_diff_contain_text": DIFF_TYPES, "evaluate_exact_match": EXACT_TYPES}


def check_entry(entry, where: str) -> None:
    """One `evaluation` entry: a known function with the arguments it reads (ValueError naming what is wrong)."""
    if not isinstance(entry, dict) or "function" not in entry or not isinstance(entry.get("args"), dict):
        raise ValueError(f"{where}: an evaluation entry is {{function, args}}, got {entry!r:.120}")
    fn, args = entry["function"], entry["args"]
    if fn not in EVALUATORS:
        raise ValueError(f"{where}.function: unknown evaluator {fn!r} (known: {', '.join(EVALUATORS)})")
    need = list(REQUIRED[fn])
    if fn in ("evaluate_contain", "evaluate_not_contain"):
        need.append("username" if args.get("doc_type") == "email" else "file")
    for key in need:
        if key not in args:
            raise ValueError(f"{where}.args.{key}: {fn} needs it")
    if fn in DOC_TYPES and args["doc_type"] not in DOC_TYPES[fn]:
        raise ValueError(f"{where}.args.doc_type: {args['doc_type']!r} is not one {fn} reads ({DOC_TYPES[fn]})")


def passes(evaluation: list[dict], where: Where, variant: str = "official") -> tuple[bool, list[str]]:
    """(all passed, one line per entry: `ok`/`FAIL`/`ERROR …` with the function name)."""
    lines, ok = [], True
    for entry in evaluation:
        fn = entry["function"]
        try:
            good = bool(EVALUATORS[fn](where, entry["args"], variant))
            lines.append(f"{'ok' if good else 'FAIL'} {fn}")
        except Exception as e:  # noqa: BLE001 - as evaluation.py: an evaluator that raises fails the subtask
            good = False
            lines.append(f"ERROR {fn}: {type(e).__name__}: {str(e)[:120]}")
        ok = ok and good
    return ok, lines


__all__ = ["EVALUATORS", "Where", "check_entry", "passes"]
