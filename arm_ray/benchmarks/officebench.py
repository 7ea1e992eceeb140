"""OfficeBench's own tasks on real documents: `suite: officebench` (the official harness, zlwang-cs/OfficeBench
4434746) and `suite: officebench_simia` (the SIMIA harness, zerowsw/Simia-WM-Exp 867bb63, that the SIMIA experts are
trained for and the ARM paper's 2-app / 3-app numbers use).

Tasks: option `data_dir` is a `tasks/` folder (`<n>-<k>/subtasks/<i>.json` with `testbed/` and `reference/`
beside it). Each subtask states the user, date, weekday, time, the request and an `evaluation` list; sets are by
app count: `1-app`, `2-app`, `3-app`, joined with `+`. Splits default to test = 2-app+3-app and dev / calibration
/ train = 1-app (the paper calibrates on the 1-app tasks); `calibration_dir` reads those splits from another
`tasks/` folder (the SIMIA copy holds only 2/3-app tasks).

One episode (both harnesses): a throwaway copy of the task's testbed with `data/`, `emails/`, `calendar/` is the
machine's `/testbed`; the apps act on its files (`officebench_apps.py`), shell commands run in the OS suite's
sandbox with that folder bound in, and the subtask's evaluators read it afterwards (`officebench_eval.py`).

The official harness: every step is one fresh request, its system message (date, time, user, the apps' one-line
intros) and a prompt rebuilt from the task, the history (`- Step i: {action} -> [observation]`), the current app
and its actions' DEMO lines; the reply's action is the text from its first `{` to its last `}`, read as a Python
dict literal (the official `eval`, here `ast.literal_eval`: a reply that needs code to run is malformed); 20 steps.
The SIMIA harness: one growing chat (the system message and first prompt as one user turn, then each reply and
its observation); the reply must be `<think>…</think><answer>{json}</answer>` read by SIMIA's own `re.match`
(from the reply's first character, `.` not crossing newlines), an action must use the current app, and switching
apps answers with the app's actions and DEMO lines; 25 steps. In both, five identical replies in a row end the
episode as stuck, and a reply holding `finish_task` (or the stuck marker) ends it.

Where this differs from the harnesses (besides what the two modules name): shell commands run in a Debian sandbox
(the official image is Ubuntu with LibreOffice and tesseract in it); the shell's stdout and stderr come back
together for the official harness, as `docker exec` gives them; event stamps are the task's date and time, not
the clock; SIMIA's shell ran on its host (here: the sandbox) and its data path is shown as `/testbed/data` (its
Docker mode's).
"""

from __future__ import annotations

import ast
import json
import re
import secrets
import shlex
import shutil
import tempfile
import threading
from datetime import datetime
from pathlib import Path

from pydantic import Field, field_validator

from arm_ray.benchmarks import officebench_apps as apps
from arm_ray.benchmarks.officebench_eval import Where, check_entry, passes
from arm_ray.errors import ConfigError
from arm_ray.suites import SuiteOptions
from arm_ray.world.base import Env, Start, StepResult, Suite, Task, check_split, round_robin, split_map

DEFAULT_SPLITS = {"test": "2-app+3-app", "dev": "1-app", "calibration": "1-app", "train": "1-app"}
SETS = ("1-app", "2-app", "3-app")
STUCK_AFTER = 5
MALFORMED = "Malformed action! You must follow the given action format! Try a different action."
FIELDS = ("username", "date", "weekday", "time", "task", "evaluation")
# Faults of the official task files (4434746): the official evaluator fails these subtasks whatever the agent does,
# so they load (the sets keep their official sizes) and score 0; any other fault is an error naming file and field.
KNOWN_FAULTS = {
    "1-14-2": "args.expected_file",  # reference/salery.xlsx is not in the task (reference/salary.xlsx is)
    "2-48-0": "args.file",  # `file` sits beside `args`, so the official `args['file']` raises
    "3-8-0": "args.file", "3-29-0": "args.file", "3-30-0": "args.file", "3-32-0": "args.file",
}

# ---------------------------------------------------------------- the official prompts
OFFICIAL_UNDECIDED = ("##Task: {task}\n##Available apps: {available_apps}\n##Instruction:\n"
                      " - choose an app from the avaiblable apps: {{'app': 'system', 'action': 'switch_app', "
                      "'target_app': [THE_APP_YOU_CHOOSE]}}\n##Command:")
OFFICIAL_UNDECIDED_HISTORY = ("##Task: {task}\n##History:\n{history}##Available apps: {available_apps}\n"
                              "##Instruction:\n - choose an app from the avaiblable apps: {{'app': 'system', "
                              "'action': 'switch_app', 'target_app': [THE_APP_YOU_CHOOSE]}}\n##Command:")
OFFICIAL_DECIDED = (
    "##Task: {task}\n##History:\n{history}##Current apps: {current_app}\n"
    "##Instruction: Choose one action from the list as the next step.\n{detailed_instruction}"
    " - switch to another app among {available_apps}: {{'app': 'system', 'action': 'switch_app', 'target_app': "
    "[THE_APP_YOU_CHOOSE]}}\n"
    " - finish the task with your answer as None if the task is not a question: {{'app': 'system', 'action': "
    "'finish_task', 'answer': 'None'}}\n"
    " - finish the task with your answer if the task is a question: {{'app': 'system', 'action': 'finish_task', "
    "'answer': [ANSWER]}}\n##Command:")
OFFICIAL_SYSTEM = (
    "Today is {date} ({weekday}). The current time is {time}. You are an AI assistant for user {username}.\n"
    "You can help solve the task step by step.\nYou can interact with an operation system and use apps to solve the "
    "task.\nYou must follow the instructions and use the given json format to call APIs.\nYou can only generate one "
    "action at a time.\nYou can find files for your task in `/testbed/data`. If you don't know the filenames, please "
    "switch to shell app and call commands to list the directory.\nYou have following apps installed in the system:\n"
    "{app_introduction}")

# ---------------------------------------------------------------- SIMIA's prompts (configs/prompts_v2.json)
_SIMIA_FORMAT = ("When responding, follow this thought-answer template and output the next step:\n"
                 "<think> [your reasoning here] </think>\n<answer> [your JSON-formatted action here] </answer>")
SIMIA_UNDECIDED = ("##Task: {task}\n##Available apps: {available_apps}\n##Instruction:\n - choose an app from the "
                   "available apps: {{\"app\": \"system\", \"action\": \"switch_app\", \"target_app\": "
                   "[THE_APP_YOU_CHOOSE]}}")
SIMIA_DECIDED = (
    "##Task: {task}\n##Current app: {current_app}\n##Instruction: Choose one action from the list as the next step.\n"
    "{detailed_instruction} - switch to another app among {available_apps}: {{\"app\": \"system\", \"action\": "
    "\"switch_app\", \"target_app\": [THE_APP_YOU_CHOOSE]}}\n"
    " - finish the task with your answer as None if the task is not a question: <think> I'm finished the task. "
    "</think>\n<answer> {{\"app\": \"system\", \"action\": \"finish_task\", \"answer\": \"None\"}} </answer>\n"
    " - finish the task with your answer if the task is a question: <think> I'm finished and the answer is [answer] "
    "</think>\n<answer> {{\"app\": \"system\", \"action\": \"finish_task\", \"answer\": [ANSWER]}} </answer>\n"
    + _SIMIA_FORMAT)
SIMIA_SYSTEM = (
    "Today is {date} ({weekday}). The current time is {time}. You are an AI assistant for user {username}.\n"
    "You can help solve the task step by step.\nYou can interact with an operation system and use apps to solve the "
    "task.\nYou must follow the instructions and use the given json format to call APIs.\nYou can only generate one "
    "action at a time.\nYou can find files for your task in `{testbed_data_path}`. If you don't know the filenames, "
    "please switch to shell app and call commands to list the directory.\n*Safety*: You may only manipulate/create "
    "files/folders under the `{testbed_data_path}` directory. You are not allowed to access any other data files or "
    "directories.\n" + _SIMIA_FORMAT + "\nStrictly follow this format with no extra text. Below is an example "
    "interaction following this template.\n\n##Task: Remind Bob that he has a dinner at 5/18/2024 7:00 p.m.\n"
    "<think> To add a reminder for Bob's dinner, I need to create an event in his calendar. First, I must switch to "
    "the calendar app. </think>\n<answer> {{\"app\": \"system\", \"action\": \"switch_app\", \"target_app\": "
    "\"calendar\"}} </answer>\nObservation: \"Successfully switched to app: calendar\"\n<think> Now that I'm in the "
    "calendar app, I should create an event for Bob's dinner at 7:00 p.m. on May 18, 2024. </think>\n<answer> "
    "{{\"app\": \"calendar\", \"action\": \"create_event\", \"user\": \"Bob\", \"summary\": \"Dinner\", "
    "\"time_start\": \"2024-05-18 19:00:00\", \"time_end\": \"2024-05-18 20:00:00\"}} </answer>\nObservation: "
    "\"Successfully created a new event to Bob's calendar.\"\n<think> The event has been successfully added to Bob's "
    "calendar. My task is complete. </think>\n<answer> {{\"app\": \"system\", \"action\": \"finish_task\", "
    "\"answer\": \"None\"}} </answer>\n\nYou have following apps installed in the system:\n{app_introduction}")
SIMIA_CHAT_SYSTEM = "You're a helpful assistant. "
_SIMIA_THINK = re.compile(r"<think>(.*?)</think>\s*<answer>(.*)</answer>")
_SIMIA_ANSWER = re.compile(r"<answer>(.*)</answer>")


class OfficeOptions(SuiteOptions):
    data_dir: str = Field(description="a `tasks/` folder of OfficeBench (official or SIMIA copy)")
    calibration_dir: str | None = Field(None, description="a `tasks/` folder for the dev, calibration and train "
                                        "splits (default: data_dir)")
    splits: dict[str, str] = Field(default_factory=lambda: dict(DEFAULT_SPLITS),
                                   description="our split -> app-count sets joined by + (1-app, 2-app, 3-app)")
    max_iter: int | None = Field(None, gt=0, description="steps per episode (default: the harness's, 20 / 25)")
    command_timeout_s: float | None = Field(None, gt=0, description="longest a shell command runs (default: the "
                                            "harness's, 10 s / 240 s)")
    rootfs_dir: str | None = Field(None, description="the OS suite's tree for the shell app's sandbox (default: the "
                                   "cached one)")

    @field_validator("splits")
    @classmethod
    def _our_splits(cls, splits: dict[str, str]) -> dict[str, str]:
        merged = split_map(splits, DEFAULT_SPLITS)
        for ours, theirs in merged.items():
            for part in theirs.split("+"):
                if part not in SETS:
                    raise ValueError(f"splits.{ours}: {part!r} is not an OfficeBench set ({', '.join(SETS)})")
        return merged


def _eval_paths(entry: dict) -> list[tuple[str, str]]:
    """(argument, path) pairs of an entry that must exist before the episode: the start state and references."""
    a = entry["args"]
    return [(k, a[k]) for k in ("input_file", "expected_file") if k in a]


def load_subtask(path: Path, task_dir: Path, fault: str | None = None) -> dict:
    """One subtask file, checked: its fields, every evaluator and the files its evaluation reads from the start."""
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as e:
        raise ConfigError(f"{path}: not readable as JSON ({e})") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: a subtask is a JSON object")
    for key in FIELDS:
        if key not in raw:
            raise ConfigError(f"{path}: field {key!r} is missing (a subtask has {', '.join(FIELDS)})")
    if not isinstance(raw["evaluation"], list) or not raw["evaluation"]:
        raise ConfigError(f"{path}: field 'evaluation' must be a non-empty list")
    where = Where(task_dir / "testbed", task_dir / "testbed", task_dir)
    for i, entry in enumerate(raw["evaluation"]):
        try:
            check_entry(entry, f"evaluation[{i}]")
            for key, rel in _eval_paths(entry):
                if not where(rel).is_file():
                    raise ValueError(f"evaluation[{i}].args.{key}: {rel} is not among the task's files "
                                     f"({where(rel)})")
        except ValueError as e:
            if fault is not None and f".{fault}:" in str(e):
                return {**raw, "fault": f"{e}"}
            raise ConfigError(f"{path}: {e}") from None
    return raw


def _folder_key(p: Path) -> tuple:
    return tuple(int(x) if x.isdigit() else x for x in p.name.split("-"))


def load_tasks(data_dir: Path) -> list[tuple[str, Path, str, dict]]:
    """(id, task folder, set, subtask) of a `tasks/` folder, in the official order (task numbers, then subtasks)."""
    if not data_dir.is_dir():
        raise ConfigError(f"options.data_dir: {data_dir} does not exist; it is the `tasks/` folder of an OfficeBench "
                          f"clone (git clone https://github.com/zlwang-cs/OfficeBench)")
    out = []
    for folder in sorted((d for d in data_dir.iterdir() if re.fullmatch(r"\d+-\d+", d.name)), key=_folder_key):
        for sub in sorted((folder / "subtasks").glob("*.json"), key=lambda p: int(p.stem) if p.stem.isdigit() else 0):
            tid = f"{folder.name}-{sub.stem}"
            spec = load_subtask(sub, folder, KNOWN_FAULTS.get(tid))
            out.append((tid, folder, f"{folder.name.split('-')[0]}-app", spec))
    if not out:
        raise ConfigError(f"options.data_dir: {data_dir} holds no `<n>-<k>/subtasks/*.json` task files")
    return out


def python_action(text: str):
    """The official reading of a reply: first `{` to last `}` (the whole text when there is none)."""
    if "{" not in text or "}" not in text:
        return text
    return text[text.find("{"): text.rfind("}") + 1]


def _fix(action: dict) -> dict:
    """The official `_minor_action_fix`: a one-element list becomes its element."""
    return {k: v[0] if isinstance(v, list) and len(v) == 1 else v for k, v in action.items()}


def simplify_path(current: str, changed: str) -> str:
    if not changed:
        return current
    if changed[0] == "/":
        current = ""
    parts: list[str] = []
    for seg in (current + "/" + changed).split("/"):
        if seg == "..":
            if parts:
                parts.pop()
        elif seg and seg != ".":
            parts.append(seg)
    return "/" + "/".join(parts)


def clean_cmd(action: str) -> str:
    return '{} -c """ {} """'.format("/bin/bash", action.strip())


class OfficeEnv(Env):
    """One subtask in one harness's protocol (`variant`: official or simia)."""

    def __init__(self, task: Task, suite: "OfficeBench"):
        super().__init__(task)
        self.suite, self.spec, self.variant = suite, task.data["spec"], suite.variant
        self.task_dir = Path(task.data["task_dir"])
        self.root: Path | None = None
        self.bench: apps.Bench | None = None
        self.sandbox = None
        self.app: str | None = None
        self.history: list[tuple[object, str | None]] = []
        self.window: list[str] = []
        self.finished, self.answer, self.checks = False, None, []

    # ------------------------------------------------------------ the episode's machine
    def reset(self) -> Start:
        self.root = Path(tempfile.mkdtemp(prefix="arm-officebench-"))
        self.root.chmod(0o755)  # the shell's sandbox is another host uid: it must reach the testbed
        testbed = self.root / "testbed"
        shutil.copytree(self.task_dir / "testbed", testbed) if (self.task_dir / "testbed").is_dir() else None
        for d in ("data", "emails", "calendar"):
            (testbed / d).mkdir(parents=True, exist_ok=True)
        s = self.spec
        when = datetime.strptime(f"{s['date']} {s['time']}", "%Y-%m-%d %I:%M %p")
        self.bench = apps.Bench(self.root, variant=self.variant, now=when)
        names = apps.APPS[self.variant]
        intros = "".join(f" - {apps.intro(a)}\n" for a in names)
        fields = {"username": s["username"], "date": s["date"], "weekday": s["weekday"], "time": s["time"],
                  "app_introduction": intros, "testbed_data_path": "/testbed/data"}
        if self.variant == "simia":
            system = SIMIA_SYSTEM.format_map(fields).strip()
            first = system + "\n\n" + SIMIA_UNDECIDED.format_map({"task": s["task"], "available_apps": list(names)})
            return Start([{"role": "system", "content": SIMIA_CHAT_SYSTEM}, {"role": "user", "content": first}])
        system = OFFICIAL_SYSTEM.format_map(fields).strip()
        return Start([{"role": "system", "content": system}, {"role": "user", "content": self._prompt()}])

    def view(self, messages: list[dict]) -> list[dict]:
        """What the model sees: the official harness sends each step as its system message and the latest prompt."""
        return messages if self.variant == "simia" else [messages[0], messages[-1]]

    def _prompt(self) -> str:
        s, names = self.spec, list(apps.APPS["official"])
        history = ""
        for i, (action, obs) in enumerate(self.history):
            history += f" - Step {i}: {action} -> [{obs.replace(chr(10), chr(92) + 'n')}]\n" if obs else \
                f" - Step {i}: {action}\n"
        if self.app is None:
            if not self.history:
                return OFFICIAL_UNDECIDED.format_map({"task": s["task"], "available_apps": names})
            return OFFICIAL_UNDECIDED_HISTORY.format_map({"task": s["task"], "history": history,
                                                          "available_apps": names})
        detail = "".join(f" - {apps.demo(self.app, a, 'official')}\n" for a in apps.ACTIONS[self.app])
        return OFFICIAL_DECIDED.format_map({"task": s["task"], "history": history, "current_app": self.app,
                                            "detailed_instruction": detail,
                                            "available_apps": [a for a in names if a != self.app]})

    def _shell(self, command: str) -> tuple[int, str, str, bool]:
        """(exit status, stdout, stderr, timed out) of a command in the episode's sandbox at the shell's cwd."""
        if self.sandbox is None:
            self.sandbox = self.suite.new_sandbox(self.root / "testbed")
        for p in [self.root / "testbed", *(self.root / "testbed").rglob("*")]:  # ours: let the machine's root write
            try:
                p.chmod(0o777 if p.is_dir() else 0o666)
            except PermissionError:  # made inside: already open to all (umask 0)
                pass
        words = shlex.split(clean_cmd(command))  # as docker exec splits the command it is given
        split = f"__ARM_STDERR_{secrets.token_hex(4)}__"
        script = (f"cd {shlex.quote(self.bench.workdir)} && umask 000 && {{ bash -c {shlex.quote(words[2])} "
                  f"{' '.join(map(shlex.quote, words[3:]))}; }} 2>/tmp/.arm_err; rc=$?; printf '{split}'; "
                  f"cat /tmp/.arm_err; exit $rc")
        r = self.sandbox.run(["bash", "-c", script], timeout=self.suite.timeout)
        out, _, err = r.output.partition(split)
        return r.returncode, out, err, r.timed_out

    # ------------------------------------------------------------ one step
    def step(self, action_text: str) -> StepResult:
        raw = action_text if self.variant == "simia" else (python_action(action_text) or action_text)
        self.window = (self.window + [raw])[-STUCK_AFTER:]
        stuck = len(self.window) >= STUCK_AFTER and len(set(self.window)) == 1
        if stuck:
            raw = (json.dumps({"app": "system", "action": "got_stuck"}) if self.variant == "simia" else
                   repr({"app": "system", "action": "got_stuck"}))
        obs, invalid = self._exec(raw)
        done = "finish_task" in raw or "got_stuck" in raw
        if done:
            reason = "stuck" if stuck else ("finish" if self.finished else "invalid")
            return StepResult([], done=True, invalid=invalid, finish_reason=reason)
        if self.variant == "simia":
            return StepResult([{"role": "user", "content": obs or ""}], invalid=invalid)
        return StepResult([{"role": "user", "content": self._prompt()}], invalid=invalid)

    def _exec(self, raw: str) -> tuple[str | None, bool]:
        try:
            obs = self._simia(raw) if self.variant == "simia" else self._official(raw)
            return obs, False
        except Exception as e:  # noqa: BLE001 - the harnesses' catch-all: the observation says the action was bad
            if self.variant == "simia":
                obs = f"Error: [{self.app}] {e}"
                if isinstance(e, json.JSONDecodeError):
                    obs += " Malformed action! You must follow the given action JSON format!"
                self.history.append(({"action": raw}, obs))
            else:
                obs = MALFORMED
                self.history.append((raw, obs))
            return obs, True

    def _finish(self, action: dict, newline: bool) -> str:
        answer = str(action.get("answer", "None")).replace('"', "").replace("'", "")
        self.answer, self.finished = answer, True
        (self.root / "testbed" / "data").mkdir(parents=True, exist_ok=True)
        (self.root / "testbed" / "data" / "answer.txt").write_text(answer + ("\n" if newline else ""))
        return "Task finished"

    def _cd(self, command: str) -> tuple[str, str | None]:
        if not command.startswith("cd"):
            return command, None
        new = simplify_path(self.bench.workdir, command[command.index("cd ") + 3:].strip())
        return f"cd {new}", new

    def _command(self, action: dict) -> tuple[str, int, str, str]:
        """A shell action run as both harnesses run it: a list of words joined, `cd` made absolute (and kept as the
        working directory when it succeeds), a command past the time limit an error."""
        command = action["command"]
        command = " ".join(command) if isinstance(command, list) else command
        command, new_dir = self._cd(command)
        code, out, err, timed_out = self._shell(command)
        if timed_out:
            raise TimeoutError("Timeout")
        if code == 0 and new_dir is not None:
            self.bench.workdir = new_dir
        return command, code, out, err

    def _official(self, raw: str) -> str | None:
        action = ast.literal_eval(raw)
        action = _fix(action)
        if "app" not in action or "action" not in action:
            raise ValueError("an action names its app and action")
        if action["action"] == "switch_app":
            action["app"] = "system"
        obs = None
        if action["app"] == "system":
            if action["action"] == "switch_app":
                self.app = action["target_app"]
                obs = f"Successfully switched to app: {self.app}"
            elif action["action"] == "finish_task":
                obs = self._finish(action, newline=True)
            elif action["action"] == "got_stuck":
                obs = "Task failed"
        elif action["app"] == "shell":
            command, code, out, err = self._command(action)
            printed = out + err
            obs = apps.observation(printed)
            if obs == "":
                obs = f"Successfully executed command: {command}. The output was [{printed}]."
        else:
            spec = apps.ACTIONS[action["app"]][action["action"]]
            inner = shlex.split(clean_cmd(spec.command(action)))[2]
            obs = apps.observation(apps.run_app(self.bench, action["app"], action["action"], inner))
        self.history.append((action, obs))
        return obs

    def _simia(self, raw: str) -> str | None:
        m = _SIMIA_THINK.match(raw)
        if m:
            body = m.group(2)
        else:
            m = _SIMIA_ANSWER.match(raw)
            if not m:
                raise ValueError(f"Malformed action string:{raw}. Expected <think>...</think>\n"
                                 f"<answer>[JSON payload]</answer>")
            body = m.group(1)
        if body.startswith("```json") and body.endswith("```"):
            body = re.match(r"```json(.*)```", body, re.S).group(1)
        action = _fix(json.loads(body))
        if "app" not in action or "action" not in action:
            raise ValueError("an action names its app and action")
        names = apps.APPS["simia"]
        if action["action"] == "switch_app":
            action["app"] = "system"
        elif len(action["action"].split(".")) > 1 and action["action"].split(".")[0] in names:
            action["app"], action["action"] = action["action"].split(".")[:2]
            self.app = action["app"]
        obs = None
        if action["app"] == "shell":
            if "command" not in action:
                raise ValueError('Missing command in json request. Use the format specified: {"app": "shell", '
                                 '"action": "command", "command": "<command>"}')
            command, code, out, err = self._command(action)
            obs = apps.observation(out)
            if code != 0:
                obs = f"Command failed with exit code {code}: {command}. The error was [{err}]."
            elif obs == "":
                obs = f"Successfully executed command: {command}. The output was [{out}]."
        elif action["app"] == "system":
            if action["action"] == "switch_app":
                if "target_app" not in action:
                    raise ValueError('Missing target_app in json request. Use the json format specified: {"app": '
                                     '"system", "action": "switch_app", "target_app": "<target_app>"}')
                if action["target_app"] not in names:
                    raise ValueError(f"App {action['target_app']} not available")
                self.app = action["target_app"]
                listed = "\n".join(f"- {a}" for a in apps.ACTIONS[self.app])
                detail = "".join(f" - {apps.demo(self.app, a, 'simia')}\n" for a in apps.ACTIONS[self.app])
                obs = (f"Successfully switched to app: {self.app}. Available actions:\n{listed}\n"
                       + SIMIA_DECIDED.format_map({"task": self.spec["task"], "current_app": self.app,
                                                   "detailed_instruction": detail,
                                                   "available_apps": [a for a in names if a != self.app]}))
            elif action["action"] == "finish_task":
                obs = self._finish(action, newline=False)
            elif action["action"] == "got_stuck":
                obs = "Task failed"
        elif self.app != action["app"]:
            obs = (f"Error: you must switch to the {action['app']} app before executing this action. Use the "
                   f"switch_app action to switch apps.")
        elif action["action"] in apps.ACTIONS.get(action["app"], {}) and action["app"] in names:
            spec = apps.ACTIONS[action["app"]][action["action"]]
            line = spec.command(action)
            if action["app"] in ("calendar", "email"):
                line += f" --workdir {self.root}"
            inner = shlex.split(clean_cmd(line))[2]
            obs = apps.observation(apps.run_app(self.bench, action["app"], action["action"], inner))
        else:
            obs = f"Error: Action {action['action']} not available in app {action['app']}"
        self.history.append((action, obs))
        return obs

    # ------------------------------------------------------------ the score
    def reward(self) -> float:
        where = Where(self.root / "testbed", self.task_dir / "testbed", self.task_dir)
        ok, self.checks = passes(self.spec["evaluation"], where, self.variant)
        return float(ok)

    def details(self) -> dict:
        return {"subtask": self.task.data["id"], "answer": self.answer, "checks": self.checks,
                "steps": len(self.history)}

    def close(self) -> None:
        if self.sandbox is not None:
            self.sandbox.close()
            self.sandbox = None
        if self.root is not None:
            shutil.rmtree(self.root, ignore_errors=True)
            self.root = None


class OfficeBench(Suite):
    name = "officebench"
    parser = "officebench"
    variant = "official"
    default_max_iter, default_timeout = 20, 10.0
    path_options = ("data_dir", "calibration_dir", "rootfs_dir")

    def __init__(self, **options):
        self.options = OfficeOptions.model_validate(options)
        self.max_steps = self.options.max_iter or self.default_max_iter
        self.timeout = self.options.command_timeout_s or self.default_timeout
        self._loaded: dict[str, list] = {}
        self._home = None
        self._lock = threading.Lock()

    def _dir(self, split: str) -> Path:
        d = self.options.data_dir if split == "test" else (self.options.calibration_dir or self.options.data_dir)
        return Path(d)

    def entries(self, split: str) -> list[tuple[str, Path, str, dict]]:
        d = self._dir(split)
        if str(d) not in self._loaded:
            self._loaded[str(d)] = load_tasks(d)
        wanted = self.options.splits[split].split("+")
        got = [e for e in self._loaded[str(d)] if e[2] in wanted]
        if not got:
            field = "data_dir" if split == "test" else "calibration_dir"
            raise ConfigError(f"options.splits.{split}: {d} holds no {self.options.splits[split]} tasks; set "
                              f"options.{field} to a `tasks/` folder that does")
        return got

    def tasks(self, split: str, n: int | None = None) -> list[Task]:
        check_split(split)
        entries = round_robin(self.entries(split), key=lambda e: e[2])
        return [Task(self.name, f"ob-{tid}", kind, {"id": tid, "task_dir": str(folder), "spec": spec})
                for tid, folder, kind, spec in entries[:n]]

    def _signature(self, task: Task) -> str:
        return task.data["id"]

    def home(self) -> Path:
        from arm_ray.benchmarks import rootfs
        with self._lock:
            self._home = self._home or rootfs.tree(self.options.rootfs_dir)
            return self._home

    def new_sandbox(self, testbed: Path):
        from arm_ray.benchmarks.os_sandbox import Sandbox
        return Sandbox(self.home(), 256, 256, binds=((str(testbed), "/testbed"),)).start()

    def check(self) -> None:
        """Before any rollout: the tasks load, the documents' libraries and the programs are here, the sandbox runs."""
        for split in dict.fromkeys(s for s in ("test", "dev", "calibration")):
            self.entries(split)
        missing = []
        for module, package in (("openpyxl", "openpyxl"), ("docx", "python-docx"), ("PyPDF2", "PyPDF2"),
                                ("icalendar", "icalendar")):
            try:
                __import__(module)
            except ImportError:
                missing.append(f"the Python package {package} (pip install -e '.[officebench]')")
        for program, package in (("tesseract", "tesseract-ocr"), ("soffice", "libreoffice-writer-nogui "
                                 "libreoffice-calc-nogui"), ("pdftoppm", "poppler-utils")):
            if shutil.which(program) is None:
                missing.append(f"the program {program} (apt-get install -y {package})")
        if missing:
            raise ConfigError(f"suite: {self.name} needs " + "; ".join(missing) + " (scripts/setup.sh installs all)")
        with tempfile.TemporaryDirectory() as tmp:
            Path(tmp).chmod(0o777)
            with self.new_sandbox(Path(tmp)) as box:
                r = box.run(["bash", "-c", "echo ok > /testbed/probe; cat /testbed/probe"], 20)
        if r.output.strip() != "ok":
            raise ConfigError(f"suite: {self.name}: the shell app's sandbox cannot use the testbed here (exit "
                              f"{r.returncode}: {r.output.strip()[:200]!r})")

    def make_env(self, task: Task) -> OfficeEnv:
        return OfficeEnv(task, self)

    def oracle_step(self, task: Task, messages: list[dict]) -> str:
        from arm_ray.benchmarks.officebench_gold import gold_reply
        return gold_reply(task, messages, self.variant)


class OfficeBenchSimia(OfficeBench):
    name = "officebench_simia"
    variant = "simia"
    default_max_iter, default_timeout = 25, 240.0


__all__ = ["OfficeBench", "OfficeBenchSimia", "OfficeEnv", "load_subtask", "load_tasks", "python_action"]
