"""AgentBench v0.2 OS interaction's own tasks in a sandboxed Linux (`suite: agentbench_os`, in domain).

The tasks are read from a clone of AgentBench at branch v0.2 (option `data_dir`: the clone's root). Split `test`
is the standard set, `data/os_interaction/data/{1..7}/*.json` (144 tasks), the others `data/dev.json` (26), each
with the scripts under `data/os_interaction/scripts/<group>/`. Protocol and scoring follow the official harness
(`src/server/tasks/os_interaction/task.py` there):

- a fresh machine per episode (`os_sandbox.py`, on the tree `rootfs.py` builds): the task's `init` scripts run
  first as independent processes and must all exit 0 (else the episode ends as an error before the agent acts),
  then its `start` command is typed into the episode's one `bash --login`;
- the conversation: the instructions with a one-shot example (our words, the official action formats), then the
  task. Each reply is read as the harness reads it: of its `Act: …` lines the last valid one decides; `bash` runs
  every ```bash block of the reply, joined by blank lines, in the persistent shell; `answer(…)` takes the text
  between the first "(" and the last ")" of its line; `finish` commits with no answer. Output past 800 characters
  is cut to 780 and marked. 8 rounds (`round_limit`); an episode that never commits scores 0;
- `match` compares the (stripped) answer with the task's string; `check` runs its steps in order in the same
  machine, each with the answer and the outputs of the steps before it as arguments (a `null` step runs the task's
  `example`), and passes when every step exits 0.

Where this differs from the official harness: the machine is Debian (`rootfs.py`), not Ubuntu, with the same
packages; a command is done when the shell has run it (a marker), not after 5 s of silence, and one still running
after `command_timeout_s` gets a Ctrl-C; terminal line ends are `\\n`; scripts run at most `script_timeout_s`.
"""

from __future__ import annotations

import json
import re
import threading
from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator

from arm_ray.benchmarks import rootfs
from arm_ray.benchmarks.os_sandbox import Sandbox, Shell
from arm_ray.errors import ConfigError
from arm_ray.roles.parsers import blank_think
from arm_ray.suites import SuiteOptions
from arm_ray.world.base import Env, Start, StepResult, Suite, Task, assistant_turns, check_split, round_robin, split_map

DEFAULT_SPLITS = {"test": "std", "dev": "dev", "calibration": "dev", "train": "dev"}
GROUPS = 7  # data/os_interaction/data/1..7 make the standard set
OUTPUT_CHARS, KEPT_CHARS = 800, 780  # output longer than 800 characters is cut to 780 and marked
TRUNCATED = "\n[truncated because the output is too long]"
RUNNERS = {"bash": ["bash", "-c"], "python": ["python3", "-c"]}  # the languages the task files use

# The instructions and the one-shot example, in our words; the action formats are the official ones.
PROMPT = """You will act as a person at a Linux computer, and I will play its operating system. Your goal is to \
carry out the operation I ask for, or to answer my question. In each turn, first think about what to do, then take \
exactly one of three actions: "bash", "finish" or "answer".

1. To run bash code, take the bash action and write:

Think: your reasoning here.

Act: bash

```bash
# your bash code here
```

2. When you have finished the task, take the finish action and write:

Think: your reasoning here.

Act: finish

3. When you have found the answer to the question, take the answer action and write:

Think: your reasoning here.

Act: answer(your answer, inside this pair of parentheses)

Output that is too long is cut short, and what you see is then incomplete: deal with that yourself. Your bash code \
must not wait for input. Once more: exactly one of the three actions in each turn.

"""
ONE_SHOT = [
    ("user", 'How many entries does the directory "/usr/bin" hold?'),
    ("assistant", "Think: To count the entries, I first list the directory.\n\nAct: bash\n\n```bash\nls /usr/bin\n```"),
    ("user", "The output of the OS:\n\n[ addpart apt apt-cache apt-get arch awk b2sum base32 base64 basename bash "
             "[truncated because the output is too long]"),
    ("assistant", "Think: The listing was cut short, so I let a command count the entries instead.\n\nAct: bash\n\n"
                  "```bash\nls -1 /usr/bin | wc -l\n```"),
    ("user", "The output of the OS:\n\n412"),
    ("assistant", "Think: The directory holds 412 entries.\n\nAct: answer(412)"),
]
NEW_PROBLEM = "Now a new problem, on a fresh machine. My problem is:\n\n"

_ACT = re.compile(r"Act:\s*(.+)")
_BASH = re.compile(r"```bash\n(.*?)\n```", re.S)


class OSOptions(SuiteOptions):
    data_dir: str = Field(description="root of an AgentBench clone at branch v0.2 (holds data/os_interaction/)")
    splits: dict[str, str] = Field(default_factory=lambda: dict(DEFAULT_SPLITS),
                                   description="our split -> std (data/1..7) or dev (data/dev.json)")
    round_limit: int = Field(8, gt=0, description="agent turns per episode (the official 8)")
    command_timeout_s: float = Field(30.0, gt=0, description="longest an agent's command runs before a Ctrl-C "
                                     "(the official harness stops reading after 30 s)")
    script_timeout_s: float = Field(120.0, gt=0, description="longest an init or check script runs")
    rootfs_dir: str | None = Field(None, description="a tree built by `python -m arm_ray.benchmarks.rootfs build` "
                                   "(default: the one cached for this user)")
    disk_mb: int = Field(1024, gt=0, description="room for each machine's writes (memory: a tmpfs)")
    nproc: int = Field(512, gt=0, description="processes each machine may run at once")
    order: Literal["mixed", "file"] = Field("mixed", description="mixed: the 7 groups in turn, so the first n tasks "
                                            "hold every group (group 7 alone has 88 of 144); file: as listed")

    @field_validator("splits")
    @classmethod
    def _our_splits(cls, splits: dict[str, str]) -> dict[str, str]:
        merged = split_map(splits, DEFAULT_SPLITS)
        for ours, theirs in merged.items():
            if theirs not in ("std", "dev"):
                raise ValueError(f"splits.{ours}: {theirs!r} is not an OS-interaction set (std, dev)")
        return merged


def extract_action(text: str) -> tuple[str | None, str | None]:
    """("bash", code), ("commit", answer or None) or (None, None), as the official `extract_action` reads a reply."""
    for act in reversed(_ACT.findall(text)):
        low = act.lower()
        if low.startswith("bash"):
            return "bash", "\n\n".join(_BASH.findall(text))
        if low.startswith("finish"):
            return "commit", None
        if low.startswith("answer"):
            content = act[6:].strip()
            left, right = content.find("("), content.rfind(")")
            if left == -1 or right == -1:
                continue
            return "commit", content[left + 1: right]
    return None, None


def truncate(output: str) -> str:
    return output[:KEPT_CHARS] + TRUNCATED if len(output) > OUTPUT_CHARS else output


def _script(obj, where: str, script_dir: Path) -> tuple[str, str] | None:
    """A script entry as (language, code): a string is bash; {language?, file | code}; None stays None."""
    if obj is None:
        return None
    if isinstance(obj, str):
        return "bash", obj
    if not isinstance(obj, dict) or not ("file" in obj or "code" in obj):
        raise ConfigError(f"{where}: a script is a string or {{language, file | code}}, got {obj!r:.120}")
    language = obj.get("language", "bash")
    if language not in RUNNERS:
        raise ConfigError(f"{where}: language {language!r} is not supported (the task files use {sorted(RUNNERS)})")
    if "code" in obj:
        return language, obj["code"]
    path = script_dir / obj["file"]
    if not path.is_file():
        raise ConfigError(f"{where}: script file {path} does not exist")
    return language, path.read_text(encoding="utf-8")


def load_task(item: dict, where: str, script_dir: Path) -> dict:
    """One official task as the episode needs it (the official `_load_configs`, checked)."""
    if not isinstance(item, dict) or not isinstance(item.get("description"), str):
        raise ConfigError(f"{where}: an OS task needs a description string")
    create = item.get("create", {})
    init = []
    if isinstance(create, dict):  # two official tasks carry a check list here; the harness then runs no init
        if create.get("image") not in (None, "local-os/default"):
            raise ConfigError(f"{where}: image {create['image']!r}: only the default image is built")
        raw = create.get("init", [])
        init = [_script(s, f"{where}.create.init", script_dir) for s in (raw if isinstance(raw, list) else [raw])]
    evaluation = item.get("evaluation")
    if not isinstance(evaluation, dict):
        raise ConfigError(f"{where}: an OS task needs an evaluation")
    task = {"description": item["description"], "init": [s for s in init if s is not None],
            "start": _script(item.get("start"), f"{where}.start", script_dir), "match": None, "check": None,
            "example": None}
    if "match" in evaluation:
        match = evaluation["match"]
        task["match"] = {"answer": match, "strip": True} if isinstance(match, str) else match
        if not isinstance(task["match"], dict) or not ({"answer", "regex"} & set(task["match"])):
            raise ConfigError(f"{where}.evaluation.match: a string, or {{answer | regex, strip}}")
    elif "check" in evaluation:
        raw = evaluation["check"]
        task["check"] = [_script(s, f"{where}.evaluation.check", script_dir)
                         for s in (raw if isinstance(raw, list) else [raw])]
    else:
        raise ConfigError(f"{where}.evaluation: needs match or check")
    if "example" in evaluation:
        task["example"] = _script(evaluation["example"], f"{where}.evaluation.example", script_dir)
    if task["check"] and None in task["check"] and task["example"] is None:
        raise ConfigError(f"{where}.evaluation: a null check step runs the example, and there is none")
    return task


def load_set(data_dir: Path, name: str) -> list[tuple[str, str, dict]]:
    """(official index, group, task) of a set, in the official order: groups 1..7 (files sorted), or dev."""
    base = data_dir / "data" / "os_interaction"
    if not base.is_dir():
        raise ConfigError(f"options.data_dir: {base} does not exist; data_dir is the root of an AgentBench v0.2 "
                          f"clone (git clone -b v0.2 https://github.com/THUDM/AgentBench)")
    files = ([(f"std-{g:03d}-", str(g), p) for g in range(1, GROUPS + 1)
              for p in sorted((base / "data" / str(g)).glob("*.json"))] if name == "std" else
             [("dev-001-", "dev", base / "data" / "dev.json")])
    out = []
    for prefix, group, path in files:
        try:
            raw = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as e:
            raise ConfigError(f"{path}: not readable as JSON ({e})") from None
        for i, item in enumerate(raw if isinstance(raw, list) else [raw]):
            index = f"{prefix}{path.stem}-{i:05d}"
            out.append((index, group, load_task(item, f"{path}[{i}]", base / "scripts" / group)))
    if not out:
        raise ConfigError(f"{base}: no task files for set {name!r}")
    return out


class InitFailed(RuntimeError):
    pass


class OSEnv(Env):
    def __init__(self, task: Task, suite: "AgentBenchOS"):
        super().__init__(task)
        self.suite, self.spec, self.opts = suite, task.data["task"], suite.options
        self.sandbox: Sandbox | None = None
        self.shell: Shell | None = None
        self.answer, self.committed, self.commands, self.timeouts = None, False, 0, 0
        self.checks: list[tuple[int, str]] = []  # each check step's exit status and output (its head)

    def _script(self, script: tuple[str, str], params: list[str] = ()):
        language, code = script
        argv = [*RUNNERS[language], code, *(["--", *params] if language == "bash" and params else params)]
        return self.sandbox.run(argv, timeout=self.opts.script_timeout_s)

    def reset(self) -> Start:
        self.sandbox = self.suite.new_sandbox()
        self.shell = self.sandbox.shell()
        self.shell.open()  # before init, as Docker's `bash --login` is: its login files are read before init edits them
        for n, script in enumerate(self.spec["init"], 1):
            r = self._script(script)
            if r.returncode != 0:  # as in the official harness, the episode ends before the agent acts
                raise InitFailed(f"init script {n} of {len(self.spec['init'])} exited {r.returncode}"
                                 f"{' (time limit)' if r.timed_out else ''}: {r.output.strip()[-300:]}")
        if self.spec["start"]:
            self.shell.run(self.spec["start"][1], timeout=self.opts.command_timeout_s)
        shot = [{"role": role, "content": text} for role, text in ONE_SHOT]
        shot[0]["content"] = PROMPT + "My problem is:\n\n" + shot[0]["content"]
        return Start([*shot, {"role": "user", "content": NEW_PROBLEM + self.spec["description"]}])

    def step(self, action_text: str) -> StepResult:
        action, content = extract_action(blank_think(action_text))
        if action is None:
            return StepResult([], done=True, invalid=True, finish_reason="invalid")
        if action == "commit":
            self.answer, self.committed = content, True
            return StepResult([], done=True, finish_reason="answer" if content is not None else "finish")
        r = self.shell.run(content, timeout=self.opts.command_timeout_s)
        self.commands += 1
        self.timeouts += r.timed_out
        out = truncate(r.output)
        return StepResult([{"role": "user", "content": "The output of the OS:\n\n" + out if out else
                            "The output of the OS is empty."}])

    def reward(self) -> float:
        if not self.committed:
            return 0.0
        answer, match = self.answer, self.spec["match"]
        if match:
            if answer is None:
                return 0.0
            if match.get("strip"):
                answer = answer.strip()
            if "answer" in match:
                return float(answer == match["answer"])
            return float(re.search(match["regex"], answer) is not None)
        params = [str(answer)]  # "None" after `finish`, as the official harness passes it
        for script in self.spec["check"]:
            r = self._script(script or self.spec["example"], params)
            self.checks.append((r.returncode, r.output[:200]))
            if r.returncode != 0:
                return 0.0
            params.append(r.output)
        return 1.0

    def details(self) -> dict:
        return {"answer": self.answer, "commands": self.commands, "timeouts": self.timeouts,
                **({"checks": self.checks} if self.checks else {})}

    def close(self) -> None:
        if self.shell is not None:
            self.shell.close()
        if self.sandbox is not None:
            self.sandbox.close()


class AgentBenchOS(Suite):
    name = "agentbench_os"
    parser = "agentbench_os"
    path_options = ("data_dir", "rootfs_dir")

    def __init__(self, **options):
        self.options = OSOptions.model_validate(options)
        self.max_steps = self.options.round_limit
        self._sets: dict[str, list] = {}
        self._home = None
        self._lock = threading.Lock()

    def set(self, name: str) -> list[tuple[str, str, dict]]:
        if name not in self._sets:
            self._sets[name] = load_set(Path(self.options.data_dir), name)
        return self._sets[name]

    def tasks(self, split: str, n: int | None = None) -> list[Task]:
        check_split(split)
        name = self.options.splits[split]
        entries = self.set(name)
        if self.options.order == "mixed":
            entries = round_robin(entries, key=lambda e: e[1])
        return [Task(self.name, f"os-{index}", "match" if t["match"] else "check",
                     {"set": name, "index": index, "group": group, "task": t}) for index, group, t in entries[:n]]

    def _signature(self, task: Task) -> str:
        return task.data["index"]

    def home(self) -> Path:
        with self._lock:
            self._home = self._home or rootfs.tree(self.options.rootfs_dir)
            return self._home

    def new_sandbox(self) -> Sandbox:
        return Sandbox(self.home(), self.options.disk_mb, self.options.nproc).start()

    def check(self) -> None:
        """Before any rollout: every split's tasks load, the tree is built, and a machine runs a command both ways."""
        for name in dict.fromkeys(self.options.splits.values()):
            self.set(name)
        with self.new_sandbox() as box:
            shell = box.shell()
            try:
                said, ran = shell.run("echo shell-ok", timeout=20).output.strip(), box.run(["echo", "exec-ok"], 20)
            finally:
                shell.close()
        if said != "shell-ok" or ran.output.strip() != "exec-ok":
            raise ConfigError(f"suite: {self.name}: the OS sandbox does not run commands here (shell said "
                              f"{said[:200]!r}, exec exited {ran.returncode}: {ran.output.strip()[:200]!r})")

    def make_env(self, task: Task) -> OSEnv:
        return OSEnv(task, self)

    def oracle_step(self, task: Task, messages: list[dict]) -> str:
        """Gold: a `match` task answers its string; otherwise the example runs in the shell and its output is the
        answer (commands that change the machine do the task; their checks ignore the answer)."""
        t, done = task.data["task"], assistant_turns(messages) - sum(r == "assistant" for r, _ in ONE_SHOT)
        if t["match"] and "answer" in t["match"]:
            return f"Think: I know the answer.\n\nAct: answer({t['match']['answer']})"
        if done == 0 and t["example"]:
            language, code = t["example"]
            if language == "python":
                code = f"python3 - <<'ARM_EOF'\n{code}\nARM_EOF"
            return f"Think: I run the commands that solve it.\n\nAct: bash\n\n```bash\n{code.strip()}\n```"
        out = messages[-1]["content"].removeprefix("The output of the OS:\n\n").strip()
        if out == "The output of the OS is empty.":
            out = ""
        return f"Think: The output is the answer.\n\nAct: answer({out})"


__all__ = ["AgentBenchOS", "extract_action", "load_set", "truncate"]
