"""OfficeBench in both harnesses: the evaluators on hand-made documents, the two reply layouts, the apps on real
files (fire's reading of the command line included), subtasks of 1, 2 and 3 apps through the agent loop, bad
task files named before any episode."""

import json
import shutil
from datetime import datetime
from pathlib import Path

import pytest

from arm_ray.benchmarks import officebench as ob
from arm_ray.benchmarks import officebench_apps as apps
from arm_ray.benchmarks.officebench_eval import EVALUATORS, Where, check_entry, passes
from arm_ray.benchmarks.officebench_gold import nothing_reply
from arm_ray.errors import ConfigError
from arm_ray.roles.parsers import officebench as office_spans
from arm_ray.rollout.agent import run_episodes
from arm_ray.rollout.policies import OraclePolicy

openpyxl = pytest.importorskip("openpyxl")
docx = pytest.importorskip("docx")
icalendar = pytest.importorskip("icalendar")


def _xlsx(path: Path, rows: list[list]) -> Path:
    book = openpyxl.Workbook()
    for r in rows:
        book.active.append(r)
    path.parent.mkdir(parents=True, exist_ok=True)
    book.save(path)
    return path


def _ics(path: Path, events: list[tuple[str, str, str]]) -> Path:
    cal = icalendar.Calendar()
    cal.add("prodid", "-//t//")
    cal.add("version", "2.0")
    for summary, a, b in events:
        e = icalendar.Event()
        e.add("summary", summary)
        e.add("dtstart", datetime.fromisoformat(a))
        e.add("dtend", datetime.fromisoformat(b))
        cal.add_component(e)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(cal.to_ical())
    return path


@pytest.fixture
def bed(tmp_path):
    """An episode's testbed, its start state and its task folder, laid out as the official outputs are."""
    task = tmp_path / "tasks" / "1-1"
    start, out = task / "testbed", tmp_path / "run" / "testbed"
    for d in (start / "data", out / "data", out / "emails", out / "calendar", task / "reference"):
        d.mkdir(parents=True)
    return Where(out, start, task)


def ok(fn, where, **args):
    return EVALUATORS[fn](where, args)


def test_contain_reads_each_document_kind_lowercased_and_numbers_without_commas(bed):
    _xlsx(bed.testbed / "data" / "s.xlsx", [["Name", "Amount"], ["Alice", "2,100"]])
    (bed.testbed / "data" / "answer.txt").write_text("Tom\n")
    d = docx.Document()
    d.add_paragraph("Meeting Notes")
    d.save(bed.testbed / "data" / "n.docx")
    _ics(bed.testbed / "calendar" / "Bob.ics", [("Dinner", "2024-05-15 16:00", "2024-05-15 18:00")])
    apps.email_send_email(apps.Bench(bed.testbed.parent), "Alice", "bob@example.com", "Hi", "Congratulations, Bob")
    assert ok("evaluate_contain", bed, doc_type="xlsx", file="./data/s.xlsx", keywords=["alice", "2100"])
    assert not ok("evaluate_contain", bed, doc_type="xlsx", file="data/s.xlsx", keywords=["Carol"])
    assert ok("evaluate_contain", bed, doc_type="txt", file="data/answer.txt", keywords=["tom"])
    assert ok("evaluate_contain", bed, doc_type="ics", file="data/answer.txt", keywords=["Tom"])
    assert ok("evaluate_contain", bed, doc_type="docx", file="data/n.docx", keywords=["meeting notes"])
    assert not ok("evaluate_contain", bed, doc_type="docx", file="data/none.docx", keywords=["x"])  # no file
    assert ok("evaluate_contain", bed, doc_type="ics", file="./calendar/Bob.ics",
              keywords=["DTSTART:20240515T160000", "DTEND:20240515T180000", "dinner"])
    assert ok("evaluate_contain", bed, doc_type="email", username="bob", keywords=["congratulations"])
    assert ok("evaluate_contain", bed, doc_type="email", username="Alice", keywords=["Subject: Hi"])
    assert not ok("evaluate_contain", bed, doc_type="email", username="Tom", keywords=["congratulations"])
    assert ok("evaluate_not_contain", bed, doc_type="email", username="Tom", keywords=["congratulations"])
    assert not ok("evaluate_not_contain", bed, doc_type="xlsx", file="data/s.xlsx", keywords=["Alice"])


def test_contain_on_a_pdf_reads_pypdf2_text(bed):
    if shutil.which("soffice") is None:
        pytest.skip("LibreOffice (soffice) is not installed; scripts/setup.sh installs it")
    b = apps.Bench(bed.testbed.parent)
    apps.word_create_new_file(b, "/testbed/data/r.docx")
    apps.word_write_to_file(b, "/testbed/data/r.docx", "Quarterly revenue 4439044")
    said = apps.word_convert_to_pdf(b, "/testbed/data/r.docx", "/testbed/data/r.pdf")
    assert said.startswith("OBSERVATION: Successfully") and (bed.testbed / "data" / "r.pdf").is_file()
    assert ok("evaluate_contain", bed, doc_type="pdf", file="data/r.pdf", keywords=["quarterly", "4439044"])
    assert not ok("evaluate_contain", bed, doc_type="pdf", file="data/r.pdf", keywords=["annual"])
    # the official pdf comparison holds page objects, never equal: it fails even on the same file
    assert not ok("evaluate_exact_match", bed, doc_type="pdf", result_file="data/r.pdf", expected_file="data/r.pdf")


def test_file_checks_cells_comparators_and_exact_match(bed):
    _xlsx(bed.testbed / "data" / "c.xlsx", [["Name", "Class"], ["Alice", 3], ["Bob", "2.5"]])
    assert ok("evaluate_file_exist", bed, file="data/c.xlsx") and not ok("evaluate_file_exist", bed, file="data/x")
    assert ok("evaluate_file_not_exist", bed, file="data/x") and not ok("evaluate_file_not_exist", bed,
                                                                          file="./data/c.xlsx")
    assert ok("evaluate_excel_cell_value", bed, file="data/c.xlsx", matches=[{"row": "2", "col": "2", "value": "3"}])
    assert not ok("evaluate_excel_cell_value", bed, file="data/c.xlsx",
                  matches=[{"row": "2", "col": "2", "value": "4"}])
    in_range = "lambda x: x in ['1', '2', '3', '4', '5']"
    assert ok("evaluate_excel_cell_comparator", bed, file="data/c.xlsx",
              matches=[{"row": "2", "col": "2", "comparator": in_range}])
    assert not ok("evaluate_excel_cell_comparator", bed, file="data/c.xlsx",
                  matches=[{"row": "1", "col": "2", "comparator": in_range}])
    # a value with a dot: the official `\w+` finds no value there, SIMIA's `[^\t\n]+` reads "2.5"
    half = [{"row": "3", "col": "2", "comparator": "lambda x: x == '2.5'"}]
    assert not EVALUATORS["evaluate_excel_cell_comparator"](bed, {"file": "data/c.xlsx", "matches": half})
    assert EVALUATORS["evaluate_excel_cell_comparator"](bed, {"file": "data/c.xlsx", "matches": half}, "simia")
    ref = _xlsx(bed.task_dir / "reference" / "c.xlsx", [["Name", "Class"], ["Alice", 3], ["Bob", "2.5"]])
    rel = "../../../../reference/c.xlsx"
    assert bed(rel) == ref
    assert ok("evaluate_exact_match", bed, doc_type="xlsx", result_file="data/c.xlsx", expected_file=rel)
    _xlsx(bed.task_dir / "reference" / "c.xlsx", [["Name", "Class"], ["Alice", "3"]])  # a str, and no Bob
    assert not ok("evaluate_exact_match", bed, doc_type="xlsx", result_file="data/c.xlsx", expected_file=rel)
    (bed.testbed / "data" / "a.txt").write_text("x\n")
    (bed.testbed / "data" / "b.txt").write_text("x\n")
    assert ok("evaluate_exact_match", bed, doc_type="txt", result_file="data/a.txt", expected_file="data/b.txt")
    (bed.testbed / "data" / "b.txt").write_text("y\n")
    assert not ok("evaluate_exact_match", bed, doc_type="txt", result_file="data/a.txt", expected_file="data/b.txt")


def test_diff_contain_compares_the_start_with_the_end_and_no_overlap_reads_the_calendar(bed):
    _xlsx(bed.start / "data" / "score.xlsx", [["Name", "Score"], ["Alice", 78], ["Bob", 80]])
    _xlsx(bed.testbed / "data" / "score.xlsx", [["Name", "Score"], ["Alice", 78], ["Bob", 80]])
    args = dict(doc_type="xlsx", input_file="../../../../cache/0/testbed/data/score.xlsx",
                output_file="./data/score.xlsx", keywords=["Alice", "78"])
    assert not ok("evaluate_diff_contain_text", bed, **args)  # unchanged
    _xlsx(bed.testbed / "data" / "score.xlsx", [["Name", "Score"], [None, None], ["Bob", 80]])
    assert ok("evaluate_diff_contain_text", bed, **args)
    assert not ok("evaluate_diff_contain_text", bed, **{**args, "keywords": ["Bob"]})  # Bob's row did not change
    assert not ok("evaluate_diff_contain_text", bed, **{**args, "doc_type": "doc"})  # the official doc diff raises
    _ics(bed.testbed / "calendar" / "Tom.ics", [("a", "2024-05-01 09:00", "2024-05-01 10:00"),
                                                ("b", "2024-05-01 10:00", "2024-05-01 11:00")])
    assert ok("evaluate_calendar_no_overlap", bed, username="Tom")
    _ics(bed.testbed / "calendar" / "Tom.ics", [("a", "2024-05-01 09:00", "2024-05-01 10:30"),
                                                ("b", "2024-05-01 10:00", "2024-05-01 11:00")])
    assert not ok("evaluate_calendar_no_overlap", bed, username="Tom")
    # an evaluator that raises (no calendar) fails its subtask, as evaluation.py's catch-all does
    good, lines = passes([{"function": "evaluate_calendar_no_overlap", "args": {"username": "Nobody"}}], bed)
    assert not good and lines[0].startswith("ERROR evaluate_calendar_no_overlap: FileNotFoundError")


def test_command_lines_are_read_as_the_container_reads_them(tmp_path):
    """The official line for each action, split as docker and bash split it, then fire's `--name value` reading."""
    (tmp_path / "testbed" / "data").mkdir(parents=True)
    b = apps.Bench(tmp_path)
    assert apps.fire_value("100") == 100 and apps.fire_value("Alice") == "Alice" and apps.fire_value("2,1") == (2, 1)

    def run(app, action, **args):
        line = apps.ACTIONS[app][action].command({"app": app, "action": action, **args})
        inner = __import__("shlex").split(ob.clean_cmd(line))[2]
        return apps.observation(apps.run_app(b, app, action, inner))

    assert run("excel", "create_new_file", file_path="/testbed/data/t.xlsx") == \
        "Successfully create new file /testbed/data/t.xlsx"
    assert run("excel", "set_cell", file_path="/testbed/data/t.xlsx", row_idx=1, column_idx=1, text="100") == \
        "Successfully write text to /testbed/data/t.xlsx"
    run("excel", "set_cell", file_path="/testbed/data/t.xlsx", row_idx=1, column_idx=2, text="1")
    run("excel", "set_cell", file_path="/testbed/data/t.xlsx", row_idx=1, column_idx=3, text="two words")
    ws = openpyxl.load_workbook(tmp_path / "testbed" / "data" / "t.xlsx").active
    # fire made "100" a number; the official `text == True` empties a 1; quoting keeps two words together
    assert (ws.cell(1, 1).value, ws.cell(1, 2).value, ws.cell(1, 3).value) == (100, None, "two words")
    assert run("excel", "read_file", file_path="data/t.xlsx") == \
        "The file data/t.xlsx does not exist. Failed to read the file."  # relative to the shell's cwd, /
    b.workdir = "/testbed"
    assert "(1, 1): 100\t" in run("excel", "read_file", file_path="data/t.xlsx")
    said = run("email", "send_email", sender="Alice", recipient="bob@example.com", subject="Q's", content='say "hi"')
    assert said == "Successfully sent email to bob."
    mail = (tmp_path / "testbed" / "emails" / "bob" / "Qs.eml").read_text()
    assert "Subject: Qs" in mail and "say hi" in mail  # the official line strips quotes
    assert run("calendar", "delete_event", user="Bob", summary="x") == \
        "Failed to delete an event named x from Bob's calendar."  # the official app always fails
    assert run("calendar", "create_event", user="Bob", summary="Lunch", time_start="2024-05-02 12:00:00",
               time_end="2024-05-02 13:00:00") == "Successfully create a new event to Bob's calendar."
    listed = run("calendar", "list_events", username="Bob")
    assert "Summary: Lunch\nStart Time: 2024-05-02 12:00:00" in listed and "Location: Online" in listed
    assert run("word", "write_to_file", file_path="/testbed/data/none.docx", contents="x") == \
        "The file /testbed/data/none.docx does not exist. Failed to write to the file."


def test_both_reply_layouts_are_read_and_the_parser_marks_the_action():
    official = "Sure. {'app': 'excel', 'action': 'read_file', 'file_path': ['/testbed/data/a.xlsx']} done"
    raw = ob.python_action(official)
    assert raw == "{'app': 'excel', 'action': 'read_file', 'file_path': ['/testbed/data/a.xlsx']}"
    assert ob._fix(__import__("ast").literal_eval(raw))["file_path"] == "/testbed/data/a.xlsx"
    assert ob.python_action("no action") == "no action"
    assert office_spans(official) == [(official.index("{"), official.rindex("}") + 1)]
    simia = '<think> read it </think>\n<answer> {"app": "excel", "action": "read_file", "file_path": "a"} </answer>'
    assert ob._SIMIA_THINK.match(simia).group(2).strip().startswith('{"app": "excel"')
    assert ob._SIMIA_THINK.match("<think> two\nlines </think><answer>{}</answer>") is None  # `.` stops at newlines
    start = simia.index("<answer>")
    assert office_spans(simia) == [(start, len(simia))]


@pytest.fixture(scope="module")
def official(officebench_dir, os_home):
    suite = ob.OfficeBench(data_dir=str(officebench_dir), splits={"test": "1-app+2-app+3-app"})
    suite.check()
    return suite


@pytest.fixture(scope="module")
def simia(simia_dir, officebench_dir, os_home):
    return ob.OfficeBenchSimia(data_dir=str(simia_dir), calibration_dir=str(officebench_dir))


def _pick(suite, *ids):
    by = {t.data["id"]: t for t in suite.tasks("test")}
    return [by[i] for i in ids]


# a calendar (1 app), excel + shell (2), and word + pdf + email with LibreOffice (3)
SAMPLE = ("1-1-0", "2-13-1", "3-96-0")


def test_one_two_and_three_app_subtasks_through_the_loop_in_the_official_harness(official):
    tasks = _pick(official, *SAMPLE)
    assert [t.kind for t in tasks] == ["1-app", "2-app", "3-app"]
    gold = run_episodes(official, tasks, OraclePolicy(official), "test")
    assert [(g.reward, g.error, g.finish_reason) for g in gold] == [(1.0, None, "finish")] * 3
    nothing = run_episodes(official, tasks, lambda turns: [nothing_reply("official")] * len(turns), "test")
    assert [n.reward for n in nothing] == [0.0] * 3
    g = gold[2]
    # every step is a fresh prompt: the record keeps them all, the model is shown the system message and the last
    assert g.messages[0]["role"] == "system" and "You are an AI assistant for user" in g.messages[0]["content"]
    last = g.messages[-2]["content"]
    assert last.startswith("##Task: ") and " - Step 0: {'app': 'system', 'action': 'switch_app'" in last
    assert last.endswith("##Command:") and "[Successfully switched to app:" in last
    assert all(office_spans(m["content"]) == [(0, len(m["content"]))] for m in g.messages if m["role"] == "assistant")
    assert g.details["checks"] == ["ok " + e["function"] for e in tasks[2].data["spec"]["evaluation"]]


def test_the_simia_harness_replays_its_own_layout(simia):
    tasks = _pick(simia, "2-13-1", "3-96-0")
    gold = run_episodes(simia, tasks, OraclePolicy(simia), "test")
    assert [(g.reward, g.error) for g in gold] == [(1.0, None)] * 2
    g = gold[0]
    assert g.messages[0] == {"role": "system", "content": ob.SIMIA_CHAT_SYSTEM}
    assert "<think> [your reasoning here] </think>" in g.messages[1]["content"]
    assert g.messages[3]["content"].startswith("Successfully switched to app: ")  # the observation is the turn
    assert "##Current app: " in g.messages[3]["content"]
    cal = simia.tasks("calibration", 1)[0]
    assert cal.kind == "1-app"  # the 1-app tasks come from calibration_dir


def test_malformed_replies_stuck_agents_and_the_shell_sandbox(official):
    task = _pick(official, "1-3-3")[0]  # delete file3.xlsx
    replies = iter(["{'app': 'system', 'action': 'switch_app', 'target_app': 'shell'}",
                    "{'app': 'shell', 'action': 'command', 'command': 'cd /testbed/data'}",
                    "{'app': 'shell', 'action': 'command', 'command': 'ls > listing.txt; rm file3.xlsx'}",
                    "this is not an action",
                    "{'app': 'system', 'action': 'finish_task', 'answer': 'None'}"])
    ep = run_episodes(official, [task], lambda turns: [next(replies)], "test")[0]
    assert (ep.reward, ep.finish_reason, ep.invalid_actions) == (1.0, "finish", 1)
    prompt = ep.messages[-2]["content"]
    assert "Step 1: {'app': 'shell', 'action': 'command', 'command': 'cd /testbed/data'} -> " in prompt
    assert "Step 3: this is not an action -> [" + ob.MALFORMED + "]" in prompt
    # five identical replies: the stuck marker ends the episode
    stuck = run_episodes(official, [task], lambda turns: ["{'app': 'system', 'action': 'switch_app', "
                                                          "'target_app': 'word'}"], "test")[0]
    assert (stuck.steps, stuck.finish_reason, stuck.reward) == (5, "stuck", 0.0)


def test_bad_task_files_are_named_before_any_episode(tmp_path):
    base = tmp_path / "tasks"
    sub = base / "1-1" / "subtasks"
    sub.mkdir(parents=True)
    good = {"username": "Bob", "date": "2020-05-01", "weekday": "Friday", "time": "10:00 AM", "task": "t",
            "evaluation": [{"function": "evaluate_file_exist", "args": {"file": "data/a.xlsx"}}]}
    cases = [
        ({k: v for k, v in good.items() if k != "evaluation"}, "field 'evaluation' is missing"),
        ({**good, "evaluation": [{"function": "evaluate_magic", "args": {}}]},
         r"evaluation\[0\].function: unknown evaluator 'evaluate_magic'"),
        ({**good, "evaluation": [{"function": "evaluate_contain", "args": {"doc_type": "xlsx", "keywords": []}}]},
         r"evaluation\[0\].args.file: evaluate_contain needs it"),
        ({**good, "evaluation": [{"function": "evaluate_exact_match", "args": {
            "doc_type": "xlsx", "result_file": "data/a.xlsx", "expected_file": "../../../../reference/a.xlsx"}}]},
         r"evaluation\[0\].args.expected_file: ../../../../reference/a.xlsx is not among the task's files"),
        ({**good, "evaluation": [{"function": "evaluate_diff_contain_text", "args": {
            "doc_type": "xlsx", "input_file": "../../../../cache/0/testbed/data/s.xlsx", "output_file": "x",
            "keywords": []}}]}, r"evaluation\[0\].args.input_file: .* is not among the task's files"),
    ]
    for spec, message in cases:
        (sub / "0.json").write_text(json.dumps(spec))
        with pytest.raises(ConfigError, match=message) as e:
            ob.OfficeBench(data_dir=str(base)).tasks("calibration")
        assert str(sub / "0.json") in str(e.value)
    with pytest.raises(ConfigError, match="options.data_dir: .* does not exist"):
        ob.OfficeBench(data_dir=str(tmp_path / "nowhere")).tasks("test")
    (sub / "0.json").write_text(json.dumps(good))
    with pytest.raises(ConfigError, match=r"options.splits.test: .* holds no 2-app\+3-app tasks"):
        ob.OfficeBench(data_dir=str(base)).tasks("test")
    with pytest.raises(ValueError, match="'4-app' is not an OfficeBench set"):
        ob.OfficeBench(data_dir=str(base), splits={"test": "4-app"})
    check_entry({"function": "evaluate_contain", "args": {"doc_type": "email", "username": "a", "keywords": []}}, "e")


def test_a_missing_program_is_named_with_its_install_command(tmp_path, officebench_dir, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))  # a machine without tesseract, LibreOffice and poppler
    with pytest.raises(ConfigError, match=r"apt-get install -y tesseract-ocr.*scripts/setup.sh"):
        ob.OfficeBench(data_dir=str(officebench_dir)).check()
