"""OfficeBench's apps acting on an episode's real files: xlsx (openpyxl), docx (python-docx), pdf (PyPDF2, the
official reader), ics (icalendar), eml (the standard library), OCR (the tesseract program), conversions (LibreOffice
headless, poppler's pdftoppm), shell commands (in the OS suite's sandbox).

The official harness turns each action into a command line (`construct_action` of the app), runs it in its Docker
container through `docker exec` (which splits the line with shlex), where bash runs `python3 /apps/<app>.py --arg
value …` and python-fire parses the arguments; the observation is the printed text after its last "OBSERVATION:".
Here the same line is built and split the same ways (shlex twice, then fire's reading of `--name value` pairs:
a value that reads as a Python literal becomes one, `100` an int), and the app runs in this process on the
episode's copy of /testbed, so quoting, numbers and lost words behave as in the container.

Paths are the container's: `/testbed/...` is the episode's testbed; a relative path is taken from the shell's
working directory (`/` at the start, as the official `workdir`); anything outside /testbed lands in a scratch
root of the episode that no evaluator reads. Apps, action names, DEMO lines and observations are the official ones
(zlwang-cs/OfficeBench 4434746 and zerowsw/Simia-WM-Exp 867bb63), including their faults, named where they matter:
- `calendar.delete_event` hands icalendar the file's path instead of its text, so it always fails (both harnesses);
- `excel.set_cell` writes an empty cell for the values True and 1 (`if text == True`);
- `pdf.convert_to_image` renders page 1 with pdftoppm at 72 dpi (official: PyMuPDF); `pdf.convert_to_word`
  converts with LibreOffice's PDF import (official: pdf2docx): different tools, the same kind of output;
- the `llm` app answers from no model here (the official one calls GPT-3.5 with a key): it says so.
"""

from __future__ import annotations

import ast
import os
import posixpath
import shlex
import shutil
import subprocess
import tempfile
import uuid
from dataclasses import dataclass
from datetime import datetime
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser
from pathlib import Path

TESTBED = "/testbed"


@dataclass
class Bench:
    """One episode's machine as the apps see it: the testbed copy, a scratch root for other paths, the shell's cwd."""
    root: Path  # holds testbed/ (the evaluated files) and rest/ (every other path)
    workdir: str = "/"
    variant: str = "official"  # "simia": the SIMIA harness's apps (calendar and email read --workdir)
    now: datetime = datetime(2020, 5, 1, 10, 0)  # the task's date and time (event stamps; the official: the clock)

    @property
    def testbed(self) -> Path:
        return self.root / "testbed"

    def host(self, path: str) -> Path:
        """The host file behind a path as the container sees it (relative to the shell's working directory)."""
        p = posixpath.normpath(posixpath.join(self.workdir, str(path)))
        if p == TESTBED or p.startswith(TESTBED + "/"):
            return self.testbed / p[len(TESTBED) + 1:]
        return self.root / "rest" / p.lstrip("/")


# ---------------------------------------------------------------- reading the documents (the evaluators use these)

def excel_text(path: Path, sheet: str | None = None) -> str:
    """The official `excel_read_file`: every cell as `(row, col): value\\t`, a newline after each row."""
    import openpyxl
    book = openpyxl.load_workbook(path)
    ws = book.active if sheet is None else book[sheet]
    out = ""
    for row in ws.iter_rows():
        for cell in row:
            out += f"({cell.row}, {cell.column}): {'[Empty Cell]' if cell.value is None else cell.value}\t"
        out += "\n"
    return out


def word_paragraphs(path: Path) -> list[str]:
    import docx
    return [p.text for p in docx.Document(str(path)).paragraphs]


def pdf_text(path: Path) -> str:
    import warnings
    with warnings.catch_warnings():  # PyPDF2 says it is deprecated; it is the official harness's reader
        warnings.simplefilter("ignore", DeprecationWarning)
        from PyPDF2 import PdfReader
    return "".join(page.extract_text() for page in PdfReader(str(path)).pages)


def _email_content(msg) -> str:
    if msg.is_multipart():
        parts = [part.get_payload(decode=True).decode(part.get_content_charset(), errors="replace")
                 for part in msg.iter_parts() if part.get_content_type() in ("text/plain", "text/html")]
        return "\n".join(parts)
    return msg.get_payload(decode=True).decode(msg.get_content_charset(), errors="replace")


def list_emails(folder: Path, first_n_letters: int = 20) -> str:
    """The official `list_emails` text for one user's folder (files in directory order, as glob lists them)."""
    folder.mkdir(parents=True, exist_ok=True)
    try:
        message = ""
        for f in [p for p in (folder.iterdir()) if p.name.endswith(".eml")]:
            mail = BytesParser(policy=policy.default).parsebytes(f.read_bytes())
            body = _email_content(mail)
            message += (f"Email ID: {f.name}\nFrom: {mail['From']}\nTo: {mail['To']}\nSubject: {mail['Subject']}\n"
                        f"Content: {body[:first_n_letters] + '...' if first_n_letters != -1 else body}\n"
                        + "-" * 50 + "\n")
        return message or "No emails found."
    except Exception:  # noqa: BLE001 - the official app's own catch-all
        return "Error: Failed to list emails."


# ---------------------------------------------------------------- the apps (each: DEMO line, command line, main)

def _q(s) -> str:
    return str(s).replace("'", "").replace('"', "")


def _calendar_file(b: Bench, user) -> Path:
    return b.testbed / "calendar" / f"{user}.ics"


def calendar_create_event(b: Bench, user, summary, time_start, time_end, workdir=None):
    from icalendar import Calendar, Event
    if user == "Multiple users":
        return f"OBSERVATION: Failed to create a new event to {user}. Only support one user."
    (b.testbed / "calendar").mkdir(parents=True, exist_ok=True)
    try:
        path = _calendar_file(b, user)
        if not path.exists():
            cal = Calendar()
            cal.add("prodid", "-//My Calendar Product//mxm.dk//")
            cal.add("version", "2.0")
        else:
            cal = Calendar.from_ical(path.read_bytes())
        event = Event()
        event.add("summary", summary)
        event.add("dtstart", datetime.strptime(time_start, "%Y-%m-%d %H:%M:%S"))
        event.add("dtend", datetime.strptime(time_end, "%Y-%m-%d %H:%M:%S"))
        event.add("dtstamp", b.now)
        event.add("description", "This is a test event")
        event.add("location", "Online")
        cal.add_component(event)
        path.write_bytes(cal.to_ical())
        ok = True
    except Exception:  # noqa: BLE001
        ok = False
    return (f"OBSERVATION: Successfully create a new event to {user}'s calendar." if ok else
            f"OBSERVATION: Failed to create a new event to {user}'s calendar.")


def calendar_delete_event(b: Bench, user, summary, workdir=None):
    from icalendar import Calendar
    try:  # the official app parses the path itself as calendar text: this always raises, so it always fails
        cal = Calendar.from_ical(str(_calendar_file(b, user)))
        for c in cal.walk():
            if c.name == "VEVENT" and c.get("summary") == summary:
                cal.subcomponents.remove(c)
                break
        _calendar_file(b, user).write_bytes(cal.to_ical())
        ok = True
    except Exception:  # noqa: BLE001
        ok = False
    return (f"OBSERVATION: Successfully delete an event named {summary} from {user}'s calendar." if ok else
            f"OBSERVATION: Failed to delete an event named {summary} from {user}'s calendar.")


def calendar_list_events(b: Bench, username, workdir=None):
    import icalendar
    if username == "Multiple users":
        return f"OBSERVATION: Failed to list events for {username}. Only support one user."
    path = _calendar_file(b, username)
    try:
        if not path.exists():
            cal = icalendar.Calendar()
            cal.add("prodid", "-//My Calendar Product//mxm.dk//")
            cal.add("version", "2.0")
            path.write_bytes(cal.to_ical())
        cal = icalendar.Calendar.from_ical(path.read_bytes())

        def fmt(v):
            return v.dt.strftime("%Y-%m-%d %H:%M:%S") if v else v
        msg = ""
        for c in cal.walk():
            if c.name == "VEVENT":
                msg += (f"Summary: {c.get('summary')}\nStart Time: {fmt(c.get('dtstart'))}\n"
                        f"End Time: {fmt(c.get('dtend'))}\nDescription: {c.get('description')}\n"
                        f"Location: {c.get('location')}\n" + "-" * 50 + "\n")
        msg = msg.strip()
    except Exception:  # noqa: BLE001
        return f"OBSERVATION: Failed to list events for {username}."
    if not msg:
        return f"OBSERVATION: No events found for {username}."
    return f"OBSERVATION: Successfully list events for {username}:\n{msg}"


def email_send_email(b: Bench, sender, recipient, subject, content, workdir=None):
    if recipient == "Multiple recipients":
        return f"OBSERVATION: Failed to send email to {recipient}. Only support one recipient."
    sender, recipient = str(sender).split("@")[0], str(recipient).split("@")[0]
    try:
        (b.testbed / "emails" / sender).mkdir(parents=True, exist_ok=True)
        (b.testbed / "emails" / recipient).mkdir(parents=True, exist_ok=True)
        mail = EmailMessage()
        mail["From"], mail["To"], mail["Subject"] = sender + "@example.com", recipient + "@example.com", subject
        mail.set_content(content)  # a number (fire read it so) raises, as in the official app
        for who in (recipient, sender):
            (b.testbed / "emails" / who / f"{subject}.eml").write_text(mail.as_string())
    except Exception:  # noqa: BLE001
        return f"OBSERVATION: Failed to send email to {recipient}."
    return f"OBSERVATION: Successfully sent email to {recipient}."


def email_list_emails(b: Bench, username, workdir=None):
    msg = list_emails(b.testbed / "emails" / str(username))
    if msg == "No emails found.":
        return f"OBSERVATION: No emails found for {username}."
    if msg == "Error: Failed to list emails.":
        return f"OBSERVATION: Failed to list emails for {username}."
    return f"OBSERVATION: Successfully list emails for {username}:\n{msg}"


def email_read_email(b: Bench, username, email_id, workdir=None):
    (b.testbed / "emails" / str(username)).mkdir(parents=True, exist_ok=True)
    try:
        name = str(email_id) if str(email_id).endswith(".eml") else f"{email_id}.eml"
        mail = BytesParser(policy=policy.default).parsebytes((b.testbed / "emails" / str(username) / name).read_bytes())
        msg = (f"From: {mail['From']}\nTo: {mail['To']}\nSubject: {mail['Subject']}\n"
               f"Content: {_email_content(mail) + '...'}\n")
    except Exception:  # noqa: BLE001
        return f"OBSERVATION: Failed to read email {email_id} for {username}."
    return f"OBSERVATION: Successfully read email {email_id} for {username}:\n{msg}"


def _workbook(path: Path):
    import openpyxl
    return openpyxl.load_workbook(path) if path.exists() else openpyxl.Workbook()


def _set_cell(path: Path, text, row_idx, column_idx, sheet_name=None) -> bool:
    try:
        book = _workbook(path)
        if sheet_name is None:
            ws = book.active
        else:
            ws = book[sheet_name] if sheet_name in book.sheetnames else book.create_sheet(title=sheet_name)
        ws.cell(row=int(row_idx), column=int(column_idx), value=text)
        book.save(path)
        return True
    except Exception:  # noqa: BLE001
        return False


def excel_set_cell(b: Bench, file_path, text, row_idx, column_idx, sheet_name=None):
    path = b.host(file_path)
    if not path.exists():
        return f"OBSERVATION: The file {file_path} does not exist. Failed to write to the file."
    if text == True:  # noqa: E712 - the official test, which 1 passes too
        text = ""
    ok = _set_cell(path, text, row_idx, column_idx, sheet_name)
    return f"OBSERVATION: {'Successfully' if ok else 'Failed to'} write text to {file_path}"


def excel_delete_cell(b: Bench, file_path, row_idx, column_idx, sheet_name=None):
    path = b.host(file_path)
    if not path.exists():
        return f"OBSERVATION: The file {file_path} does not exist. Failed to delete the cell in the file."
    ok = _set_cell(path, "", row_idx, column_idx, sheet_name)
    return f"OBSERVATION: {'Successfully' if ok else 'Failed to'} delete a cell in {file_path}"


def excel_read_file(b: Bench, file_path, sheet=None, debug=False):
    path = b.host(file_path)
    if not path.exists():
        return f"OBSERVATION: The file {file_path} does not exist. Failed to read the file."
    return "OBSERVATION: The following is the table from the excel file:\n" + excel_text(path, sheet)


def excel_create_new_file(b: Bench, file_path):
    import openpyxl
    path = b.host(file_path)
    if path.exists():
        return f"OBSERVATION: File {file_path} already exists"
    try:
        openpyxl.Workbook().save(path)
        ok = True
    except Exception:  # noqa: BLE001
        ok = False
    return f"OBSERVATION: {'Successfully' if ok else 'Failed to'} create new file {file_path}"


def _libreoffice(b: Bench, src: Path, out_dir: Path, fmt: str, infilter: str | None = None) -> None:
    """`libreoffice --headless --convert-to <fmt> <src> --outdir <dir>` with a profile of its own (two at once
    would share one and the second would do nothing); like the official call, a failed conversion says nothing."""
    profile = Path(tempfile.gettempdir()) / f"arm-lo-{uuid.uuid4().hex}"
    argv = [shutil.which("soffice") or "soffice", f"-env:UserInstallation=file://{profile}", "--headless",
            *([f"--infilter={infilter}"] if infilter else []), "--convert-to", fmt, str(src), "--outdir", str(out_dir)]
    try:
        subprocess.run(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                       timeout=120, env={**os.environ, "HOME": str(profile)})
    except (OSError, subprocess.TimeoutExpired):
        pass
    finally:
        shutil.rmtree(profile, ignore_errors=True)


def excel_convert_to_pdf(b: Bench, excel_file_path, pdf_file_path):
    src = b.host(excel_file_path)
    if not src.exists():
        return f"OBSERVATION: {excel_file_path} does not exist. Failed to convert {excel_file_path} to {pdf_file_path}"
    _libreoffice(b, src, b.host(posixpath.dirname(str(pdf_file_path)) or "."), "pdf")
    return f"OBSERVATION: Successfully convert {excel_file_path} to {pdf_file_path}"


def word_convert_to_pdf(b: Bench, word_file_path, pdf_file_path):
    src = b.host(word_file_path)
    if not src.exists():
        return (f"OBSERVATION: The word file {word_file_path} does not exist. Failed to convert the file to pdf.")
    _libreoffice(b, src, b.host(posixpath.dirname(str(pdf_file_path)) or "."), "pdf")
    return f"OBSERVATION: Successfully convert {word_file_path} to {pdf_file_path}"


def word_create_new_file(b: Bench, file_path):
    import docx
    try:
        docx.Document().save(str(b.host(file_path)))
        ok = True
    except Exception:  # noqa: BLE001
        ok = False
    return f"OBSERVATION: {'Successfully' if ok else 'Failed to'} create new file {file_path}"


def word_read_file(b: Bench, file_path, debug=False):
    path = b.host(file_path)
    if not path.exists():
        return f"OBSERVATION: The file {file_path} does not exist. Failed to read the file."
    return "OBSERVATION: The following is the content from the word file:" + "".join(
        f"\n{p}" for p in word_paragraphs(path))


def word_write_to_file(b: Bench, file_path, contents, style="pure-text"):
    import docx
    path = b.host(file_path)
    if not path.exists():
        return f"OBSERVATION: The file {file_path} does not exist. Failed to write to the file."
    try:
        doc = docx.Document(str(path))
        if style == "pure-text":
            doc.add_paragraph(contents)
        elif style == "title":
            doc.add_heading(contents, 0)
        elif style == "subtitle":
            doc.add_heading(contents, 1)
        else:
            raise NotImplementedError(style)
        doc.save(str(path))
        ok = True
    except Exception:  # noqa: BLE001
        ok = False
    return f"OBSERVATION: {'Successfully' if ok else 'Failed to'} write contents to {file_path}"


def pdf_read_file(b: Bench, pdf_file_path, debug=False):
    path = b.host(pdf_file_path)
    if not path.exists():
        return f"OBSERVATION: The pdf file {pdf_file_path} does not exist. Failed to read the file."
    return "OBSERVATION: " + pdf_text(path)


def pdf_convert_to_image(b: Bench, pdf_file_path, image_file_path):
    src, dst = b.host(pdf_file_path), b.host(image_file_path)
    if not src.exists():
        return f"OBSERVATION: The file {pdf_file_path} does not exist. Failed to convert pdf to image."
    kind = "-jpeg" if dst.suffix.lower() in (".jpg", ".jpeg") else "-png"
    try:
        with tempfile.TemporaryDirectory() as tmp:
            r = subprocess.run(["pdftoppm", "-f", "1", "-l", "1", "-r", "72", kind, "-singlefile", str(src),
                                f"{tmp}/page"], capture_output=True, text=True, timeout=60)
            if r.returncode != 0:
                raise RuntimeError(r.stderr.strip() or f"pdftoppm exited {r.returncode}")
            shutil.move(next(Path(tmp).iterdir()), dst)
        status = "Success"
    except Exception as e:  # noqa: BLE001
        status = f"Failed: {e}"
    return "OBSERVATION: " + status


def pdf_convert_to_word(b: Bench, pdf_file_path, word_file_path):
    src, dst = b.host(pdf_file_path), b.host(word_file_path)
    if not src.exists():
        return f"OBSERVATION: The pdf file {pdf_file_path} does not exist. Failed to convert the file to word."
    with tempfile.TemporaryDirectory() as tmp:
        _libreoffice(b, src, Path(tmp), "docx:MS Word 2007 XML", infilter="writer_pdf_import")
        made = list(Path(tmp).glob("*.docx"))
        if not made:
            return "OBSERVATION: Failed: the pdf could not be converted"
        dst.parent.mkdir(parents=True, exist_ok=True)
        shutil.move(made[0], dst)
    return "OBSERVATION: Success"


def ocr_recognize_file(b: Bench, file_path, debug=False):
    path = b.host(file_path)
    if not path.exists():
        return f"OBSERVATION: The file {file_path} does not exist. Failed to recognize text."
    try:
        r = subprocess.run(["tesseract", str(path), "stdout"], capture_output=True, text=True, timeout=120)
        text = r.stdout if r.returncode == 0 else None
    except (OSError, subprocess.TimeoutExpired):
        text = None
    if text:
        return f"OBSERVATION: The text from {file_path} is:\n{text}"
    return f"OBSERVATION: Failed to recognize text from {file_path}"


def llm_complete_text(b: Bench, prompt):
    return "Error: the llm app has no model in this harness (the official one queries gpt-3.5-turbo)"


def calculator_calculate(b: Bench, expression):
    """SIMIA's calculator: a Python expression over the math module, with a few builtins."""
    import math
    expression = str(expression).replace("^", "**")
    try:
        ast.parse(expression)
        if any(w in expression for w in ["import", "exec", "eval", "getattr", "setattr", "delattr", "compile", "open",
                                         "__", "globals", "locals", "subprocess"]):
            raise ValueError("Potentially unsafe operations detected in expression")
        names = {n: getattr(math, n) for n in dir(math) if not n.startswith("_")}
        names.update(min=min, max=max, sum=sum, abs=abs, sorted=sorted, len=len)
        result = eval(expression, {"__builtins__": {}}, names)  # noqa: S307 - SIMIA's calculator, builtins cut off
    except SyntaxError as e:
        result = f"Error: [calculator] Syntax error in expression: {e}"
    except Exception as e:  # noqa: BLE001
        result = f"Error: [calculator] {e}"
    return f"OBSERVATION: {result}"


# ---------------------------------------------------------------- the command lines, as `construct_action` builds them

def _cmd_create_event(a):
    user = "Multiple users" if isinstance(a["user"], list) else a["user"]
    return "python3 {} --user '''{}''' --summary '{}' --time_start '{}' --time_end '{}'".format(
        "/apps/calendar_app/calendar_create_event.py", user, a["summary"], a["time_start"], a["time_end"])


def _cmd_send_email(a):
    recipient = "Multiple recipients" if isinstance(a["recipient"], list) else a["recipient"]
    return "python3 {} --sender {} --recipient '''{}''' --subject '''{}''' --content '''{}''' ".format(
        "/apps/email_app/email_send_email.py", a["sender"], recipient, _q(a["subject"]), _q(a["content"]))


def _cmd_list_events(a):
    user = "Multiple users" if isinstance(a["username"], list) else a["username"]
    return "python3 /apps/calendar_app/calendar_list_events.py --username '''{}'''".format(user)


@dataclass(frozen=True)
class Action:
    demo: str  # the official DEMO line (Python-dict quoting)
    simia_demo: str  # SIMIA's (JSON quoting)
    command: object  # args -> the command line
    run: object  # main(bench, **fire kwargs)


def _a(demo, simia, command, run):
    return Action(demo, simia, command, run)


def _dq(demo: str) -> str:
    return demo.replace("'", '"')


_CE = ("create a new event to a user's calendar where the time format is '%Y-%m-%d %H:%M:%S':",
       "{'app': 'calendar', 'action': 'create_event', 'user': [USER_NAME], 'summary': [EVENT_SUMMARY], "
       "'time_start': [EVENT_START_TIME], 'time_end': [EVENT_END_TIME]}")
ACTIONS: dict[str, dict[str, Action]] = {
    "calendar": {
        "create_event": _a(_CE[0] + _CE[1], _CE[0] + _dq(_CE[1]), _cmd_create_event, calendar_create_event),
        "delete_event": _a(
            "delete an event from a user's calendar given the event summary:"
            "{'app': 'calendar', 'action': 'delete_event', 'user': [USER_NAME], 'summary': [EVENT_SUMMARY]}",
            "delete an event from a user's calendar given the event summary:"
            '{"app": "calendar", "action": "delete_event", "user": [USER_NAME], "summary": [EVENT_SUMMARY]}',
            lambda a: f'python3 /apps/calendar_app/calendar_delete_event.py --user {a["user"]} '
                      f'--summary "{a["summary"]}"', calendar_delete_event),
        "list_events": _a(
            "list all events from a user's calendar: {'app': 'calendar', 'action': 'list_events', "
            "'username': [USER_NAME]}",
            'list all events from a user\'s calendar: {"app": "calendar", "action": "list_events", '
            '"username": [USER_NAME]}', _cmd_list_events, calendar_list_events),
    },
    "excel": {
        "read_file": _a(
            "read the excel file to see the existing contents: {'app': 'excel', 'action': 'read_file', "
            "'file_path': [THE_PATH_TO_THE_EXCEL_FILE]",
            'read the excel file to see the existing contents: {"app": "excel", "action": "read_file", '
            '"file_path": [THE_PATH_TO_THE_EXCEL_FILE]}',
            lambda a: f'python3 /apps/excel_app/excel_read_file.py --file_path {a["file_path"]}', excel_read_file),
        "set_cell": _a(
            "write text to a cell in the excel file (index starts from 1): {'app': 'excel', 'action': 'set_cell', "
            "'file_path': [THE_PATH_TO_THE_EXCEL_FILE], 'row_idx': [THE_ROW_INDEX], 'column_idx': "
            "[THE_COLUMN_INDEX], 'text': [THE_TEXT_TO_WRITE]}",
            'write text to a cell in the excel file (index starts from 1): {"app": "excel", "action": "set_cell", '
            '"file_path": [THE_PATH_TO_THE_EXCEL_FILE], "row_idx": [THE_ROW_INDEX], "column_idx": '
            '[THE_COLUMN_INDEX], "text": [THE_TEXT_TO_WRITE]}',
            lambda a: "python3 /apps/excel_app/excel_set_cell.py --file_path {} --text '''{}''' --row_idx {} "
                      "--column_idx {}".format(a["file_path"], a["text"], a["row_idx"], a["column_idx"]),
            excel_set_cell),
        "delete_cell": _a(
            "delete text in a cell of the excel file (index starts from 1, delete means set empty): {'app': "
            "'excel', 'action': 'delete_cell', 'file_path': [THE_PATH_TO_THE_EXCEL_FILE], 'row_idx': "
            "[THE_ROW_INDEX], 'column_idx': [THE_COLUMN_INDEX]",
            'delete text in a cell of the excel file (index starts from 1, delete means set empty): {"app": '
            '"excel", "action": "delete_cell", "file_path": [THE_PATH_TO_THE_EXCEL_FILE], "row_idx": '
            '[THE_ROW_INDEX], "column_idx": [THE_COLUMN_INDEX]}',
            lambda a: "python3 /apps/excel_app/excel_delete_cell.py --file_path {} --row_idx {} --column_idx "
                      "{}".format(a["file_path"], a["row_idx"], a["column_idx"]), excel_delete_cell),
        "create_new_file": _a(
            "create a new excel file: {'app': 'excel', 'action': 'create_new_file', 'file_path': "
            "[THE_PATH_TO_THE_NEW_EXCEL_FILE]}",
            'create a new excel file: {"app": "excel", "action": "create_new_file", "file_path": '
            '[THE_PATH_TO_THE_NEW_EXCEL_FILE]}',
            lambda a: f'python3 /apps/excel_app/excel_create_new_file.py --file_path {a["file_path"]}',
            excel_create_new_file),
        "convert_to_pdf": _a(
            "convert an excel document to a pdf: {'app': 'excel', 'action': 'convert_to_pdf', 'excel_file_path': "
            "[THE_PATH_TO_THE_EXCEL_FILE], 'pdf_file_path': [THE_PATH_TO_THE_PDF_FILE]}",
            'convert an excel document to a pdf: {"app": "excel", "action": "convert_to_pdf", "excel_file_path": '
            '[THE_PATH_TO_THE_EXCEL_FILE], "pdf_file_path": [THE_PATH_TO_THE_PDF_FILE]}',
            lambda a: f'python3 /apps/excel_app/excel_convert_to_pdf.py --excel_file_path {a["excel_file_path"]} '
                      f'--pdf_file_path {a["pdf_file_path"]}', excel_convert_to_pdf),
    },
    "ocr": {
        "recognize_file": _a(
            "recognize the text from an image file: {'app': 'ocr', 'action': 'recognize_file', 'file_path': "
            "[THE_PATH_TO_THE_IMAGE_FILE]}", "",
            lambda a: f'python3 /apps/ocr_app/ocr_recognize_file.py --file_path {a["file_path"]}',
            ocr_recognize_file),
    },
    "pdf": {
        "convert_to_image": _a(
            "convert a pdf file to an image file: {'app': 'pdf', 'action': 'convert_to_image', 'pdf_file_path': "
            "[THE_PATH_TO_THE_PDF_FILE], 'image_file_path': [THE_PATH_TO_THE_IMAGE_FILE]}",
            'convert a pdf file to an image file: {"app": "pdf", "action": "convert_to_image", "pdf_file_path": '
            '[THE_PATH_TO_THE_PDF_FILE], "image_file_path": [THE_PATH_TO_THE_IMAGE_FILE]}',
            lambda a: f'python3 /apps/pdf_app/pdf_convert_to_image.py --pdf_file_path {a["pdf_file_path"]} '
                      f'--image_file_path {a["image_file_path"]}', pdf_convert_to_image),
        "convert_to_word": _a(
            "convert a pdf file to a word file: {'app': 'pdf', 'action': 'convert_to_word', 'pdf_file_path': "
            "[THE_PATH_TO_THE_PDF_FILE], 'word_file_path': [THE_PATH_TO_THE_WORD_FILE]}",
            'convert a pdf file to a word file: {"app": "pdf", "action": "convert_to_word", "pdf_file_path": '
            '[THE_PATH_TO_THE_PDF_FILE], "word_file_path": [THE_PATH_TO_THE_WORD_FILE]}',
            lambda a: f'python3 /apps/pdf_app/pdf_convert_to_word.py --pdf_file_path {a["pdf_file_path"]} '
                      f'--word_file_path {a["word_file_path"]}', pdf_convert_to_word),
        "read_file": _a(
            "read a pdf file: {'app': 'pdf', 'action': 'read_file', 'pdf_file_path': [THE_PATH_TO_THE_PDF_FILE]}",
            'read a pdf file: {"app": "pdf", "action": "read_file", "pdf_file_path": [THE_PATH_TO_THE_PDF_FILE]}',
            lambda a: f'python3 /apps/pdf_app/pdf_read_file.py --pdf_file_path {a["pdf_file_path"]}', pdf_read_file),
    },
    "email": {
        "send_email": _a(
            "Send an email to a recipient: {'app': 'email', 'action': 'send_email', 'sender': [SENDER], "
            "'recipient': [RECIPIENT], 'subject': [SUBJECT], 'content': [CONTENT]}",
            'Send an email to a recipient: {"app": "email", "action": "send_email", "sender": [SENDER], '
            '"recipient": [RECIPIENT], "subject": [SUBJECT], "content": [CONTENT]}', _cmd_send_email,
            email_send_email),
        "list_emails": _a(
            "List emails for a given username: {'app': 'email', 'action': 'list_emails', 'username': [USER_NAME]}",
            'List emails for a given username: {"app": "email", "action": "list_emails", "username": [USER_NAME]}',
            lambda a: f'python3 /apps/email_app/email_list_emails.py --username {a["username"]}', email_list_emails),
        "read_email": _a(
            "Read a user's email by the given Email ID: {'app': 'email', 'action': 'read_email', 'username': "
            "[USERNAME], 'email_id': [EMAIL_ID]}",
            'Read a user\'s email by the given Email ID: {"app": "email", "action": "read_email", "username": '
            '[USERNAME], "email_id": [EMAIL_ID]}',
            lambda a: "python3 /apps/email_app/email_read_email.py --email_id '''{}''' --username '''{}'''".format(
                a["email_id"], a["username"]), email_read_email),
    },
    "shell": {
        "command": _a(
            "run a shell command: {'app': 'shell', 'action': 'command', 'command': [THE_COMMAND_YOU_WISH_TO_RUN]}",
            'run a shell command: {"app": "shell", "action": "command", "command": [THE_COMMAND_YOU_WISH_TO_RUN]}',
            lambda a: a["command"], None),
    },
    "word": {
        "convert_to_pdf": _a(
            "convert a word document to a pdf: {'app': 'word', 'action': 'convert_to_pdf', 'word_file_path': "
            "[THE_PATH_TO_THE_WORD_FILE], 'pdf_file_path': [THE_PATH_TO_THE_PDF_FILE]}",
            'convert a word document to a pdf: {"app": "word", "action": "convert_to_pdf", "word_file_path": '
            '[THE_PATH_TO_THE_WORD_FILE], "pdf_file_path": [THE_PATH_TO_THE_PDF_FILE]}',
            lambda a: f'python3 /apps/word_app/word_convert_to_pdf.py --word_file_path {a["word_file_path"]} '
                      f'--pdf_file_path {a["pdf_file_path"]}', word_convert_to_pdf),
        "create_new_file": _a(
            "create a new word file: {'app': 'word', 'action': 'create_new_file', 'file_path': "
            "[THE_PATH_TO_THE_NEW_WORD_FILE]}",
            'create a new word file: {"app": "word", "action": "create_new_file", "file_path": '
            '[THE_PATH_TO_THE_NEW_WORD_FILE]}',
            lambda a: f'python3 /apps/word_app/word_create_new_file.py --file_path {a["file_path"]}',
            word_create_new_file),
        "read_file": _a(
            "read the content of the word file: {'app': 'word', 'action': 'read_file', 'file_path': "
            "[THE_PATH_TO_THE_WORD_FILE]",
            'read the content of the word file: {"app": "word", "action": "read_file", "file_path": '
            '[THE_PATH_TO_THE_WORD_FILE]}',
            lambda a: f'python3 /apps/word_app/word_read_file.py --file_path {a["file_path"]}', word_read_file),
        "write_to_file": _a(
            "write text to a word file: {'app': 'word', 'action': 'write_to_file', 'file_path': "
            "[THE_PATH_TO_THE_WORD_FILE], 'contents': [THE_CONTENTS_YOU_WISH_TO_WRITE]}",
            'write text to a word file: {"app": "word", "action": "write_to_file", "file_path": '
            '[THE_PATH_TO_THE_WORD_FILE], "contents": [THE_CONTENTS_YOU_WISH_TO_WRITE]}',
            lambda a: "python3 /apps/word_app/word_write_to_file.py --file_path {} --contents '''{}''' ".format(
                a["file_path"], _q(a["contents"])), word_write_to_file),
    },
    "llm": {
        "complete_text": _a(
            "Query an LLM model for an answer to a given prompt: {'app': 'llm', 'action': 'complete_text', "
            "'prompt': [PROMPT]}",
            'Query an LLM model for an answer to a given prompt: {"app": "llm", "action": "complete_text", '
            '"prompt": [PROMPT]}',
            lambda a: "python3 /apps/llm_app/llm_query.py --prompt '''{}'''".format(a["prompt"]), llm_complete_text),
    },
    "calculator": {
        "calculate": _a(
            "", "calculate a mathematical expression written in python syntax. Any math module functions are "
            'allowed.\n{"app": "calculator", "action": "calculate", "expression": [MATH_EXPRESSION_TO_EVALUATE]}',
            lambda a: "python3 /apps/calculator_app/calculator_calculate.py --expression '{}'".format(
                a["expression"]), calculator_calculate),
    },
}
INTROS = {
    "calculator": "calculator: an app to evaluate mathematical expressions.",
    "calendar": "calendar: an app to manage daily events on calendar.",
    "excel": "excel: an app to manipulate excel files, including reading, writing, etc.",
    "ocr": "ocr: an app to recognize text from images.",
    "pdf": "pdf: an app to manipulate pdf files, including format conversion and file reading.",
    "shell": "shell: an app to run shell commands in the system.",
    "word": "word: an app to manipulate word files, including reading, writing, converting, etc.",
    "email": "email: an app to manage emails, such as sending and reading emails.",
    "llm": "llm: an app to interact with the large language model to answer questions, generate text, etc.",
}
# the apps each harness lists, in its order
APPS = {"official": ("calendar", "excel", "ocr", "pdf", "shell", "word", "email", "llm"),
        "simia": ("calculator", "calendar", "excel", "pdf", "shell", "word", "email", "llm")}


def intro(app: str) -> str:
    return INTROS[app]


def demo(app: str, action: str, variant: str) -> str:
    a = ACTIONS[app][action]
    return a.simia_demo if variant == "simia" else a.demo


def fire_value(text: str):
    """A command-line value as python-fire reads it: a Python literal when it is one, else the text."""
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        return text


class FireError(Exception):
    pass


def fire_kwargs(words: list[str]) -> dict:
    """`--name value` / `--name=value` pairs of an app's command line; a word left over is fire's error."""
    kw, i = {}, 0
    while i < len(words):
        w = words[i]
        if not w.startswith("--"):
            raise FireError(f"ERROR: Could not consume arg: {w}")
        name, eq, value = w[2:].partition("=")
        if not eq:
            if i + 1 >= len(words) or words[i + 1].startswith("--"):
                value = True  # fire: a flag with no value is True
            else:
                i += 1
                value = words[i]
        kw[name.replace("-", "_")] = fire_value(value) if isinstance(value, str) else value
        i += 1
    return kw


def run_app(b: Bench, app: str, action: str, line: str) -> str:
    """Run an app's command line (`python3 /apps/... --k v`) as the container would: the observation text."""
    words = shlex.split(line)  # bash's reading of the line (its quoting), for the plain lines the apps build
    if len(words) < 2 or words[0] != "python3":
        raise FireError(f"not an app command line: {line[:200]}")
    try:
        kw = fire_kwargs(words[2:])
        out = ACTIONS[app][action].run(b, **kw)
    except FireError as e:
        return str(e)
    except TypeError as e:  # a missing or unknown argument: fire prints its usage error
        return f"ERROR: {e}"
    except Exception as e:  # noqa: BLE001 - an app that raised prints its traceback, which is the observation
        return f"Traceback (most recent call last):\n{type(e).__name__}: {e}"
    return str(out)


def observation(printed: str) -> str:
    """What the harness keeps of a command's output: the text after its last "OBSERVATION:", stripped."""
    return printed.split("OBSERVATION:")[-1].strip()


__all__ = ["ACTIONS", "APPS", "Bench", "excel_text", "fire_kwargs", "fire_value", "intro", "list_emails",
           "observation", "pdf_text", "run_app", "word_paragraphs"]
