"""shell: mirrors AgentBench OS.

Each turn: `Think: …` then `Act: bash` with a ```bash block, or `Act: answer(X)`,
or `Act: finish`. At most 8 rounds; command output truncated to 800 characters.
Questions are checked by exact match, tasks that change files by a check
command. Every command (the model's and the checker's) runs in the bubblewrap
sandbox (`sandbox.py`) inside the task's own throwaway directory.
"""

from __future__ import annotations

import os
import random
import re
import shutil
import tempfile
from pathlib import Path

from arm_ray.roles.parsers import agentbench_os as find_actions
from arm_ray.world import sandbox
from arm_ray.world.base import Env, Start, StepResult, Task, assistant_turns
from arm_ray.world.demos import WorldSuite

WORDS = ["alpha", "bravo", "cedar", "delta", "ember", "fjord", "gamma", "harbor", "indigo", "jasper", "koala",
         "lunar", "maple", "nova", "orbit", "pixel", "quartz", "raven", "sierra", "tundra"]
SYSTEM = ("You are an assistant that operates a Linux shell. Each turn write 'Think: <reasoning>' and then one "
          "action: 'Act: bash' followed by a ```bash block with one command; 'Act: answer(<answer>)'; or "
          "'Act: finish' when a task that changes files is done. The working directory holds the task's files.")
MAX_OUTPUT = 800
FILE_TIME = 1767225600  # 2026-01-01 00:00 UTC: the task files' modification time
_BASH = re.compile(r"```bash[ \t]*\n(.*?)(?:```|\Z)", re.S)
_ANSWER = re.compile(r"Act:[ \t]*answer\((.*)\)", re.S)


def act_bash(think: str, command: str) -> str:
    return f"Think: {think}\n\nAct: bash\n\n```bash\n{command}\n```"


def act_answer(think: str, answer: str) -> str:
    return f"Think: {think}\n\nAct: answer({answer})"


class ShellEnv(Env):
    def reset(self) -> Start:
        root = Path(tempfile.mkdtemp(prefix="arm-shell-"))
        root.chmod(0o777)  # the sandbox runs as an unprivileged uid
        for name, text in self.task.data["files"].items():
            (root / name).write_text(text, encoding="utf-8")
        # a fixed time on the task's files: `ls -l` would otherwise show the wall clock, and a sampled rollout
        # that reads it would depend on when it ran
        for path in [*root.iterdir(), root]:
            os.utime(path, (FILE_TIME, FILE_TIME))
        self.state = {"root": str(root), "answer": None, "finished": False}
        return Start([{"role": "system", "content": SYSTEM}, {"role": "user", "content": self.task.data["question"]}])

    def step(self, action_text: str) -> StepResult:
        spans = find_actions(action_text)
        if not spans:
            return StepResult([], done=True, invalid=True, finish_reason="invalid")
        act = action_text[spans[0][0]: spans[0][1]]
        if re.match(r"Act:[ \t]*finish", act):
            self.state["finished"] = True
            return StepResult([], done=True, finish_reason="finish")
        m = _ANSWER.match(act)
        if m:
            self.state["answer"] = m.group(1).strip()
            return StepResult([], done=True, finish_reason="answer")
        m = _BASH.search(act)
        if not m or not m.group(1).strip():
            return StepResult([], done=True, invalid=True, finish_reason="invalid")
        result = sandbox.run(m.group(1), Path(self.state["root"]), timeout=10)
        out = result.output
        if len(out) > MAX_OUTPUT:
            out = out[:MAX_OUTPUT] + "\n[truncated because the output is too long]"
        if result.timed_out:
            out += "\n[command timed out]"
        return StepResult([{"role": "user", "content": f"The output of the OS:\n\n{out}" if out else
                            "The output of the OS is empty."}])

    def reward(self) -> float:
        d = self.task.data
        if "answer" in d:
            return float(self.state["answer"] is not None and self.state["answer"] == d["answer"])
        result = sandbox.run(d["check"], Path(self.state["root"]), timeout=10)
        return float(self.state["finished"] and result.returncode == 0 and result.output.strip() == d["expect"])

    def close(self) -> None:
        if self.state.get("root"):
            shutil.rmtree(self.state["root"], ignore_errors=True)


class ShellSuite(WorldSuite):
    name = "shell"
    parser = "agentbench_os"
    max_steps = 8

    def check(self) -> None:
        """The sandbox runs a command here, or the run stops before any rollout (not a table of zeros)."""
        from arm_ray.errors import ConfigError

        with tempfile.TemporaryDirectory(prefix="arm_ray_check_") as d:
            Path(d).chmod(0o777)
            try:
                result = sandbox.run("echo sandbox-ok", Path(d), timeout=10)
            except sandbox.SandboxUnavailable as e:
                raise ConfigError(f"suite: {self.name}: {e}") from None
        if result.output.strip() != "sandbox-ok":
            raise ConfigError(f"suite: {self.name}: the bubblewrap sandbox does not run commands here (exit "
                              f"{result.returncode}: {result.output.strip()[:200]!r})")

    def _make_task(self, rng: random.Random, index: int) -> Task:
        kind = rng.choice(["count_ext", "count_lines", "sum", "create"])
        files = {}
        for w in rng.sample(WORDS, rng.randint(3, 7)):
            files[f"{w}.{rng.choice(['log', 'txt', 'csv'])}"] = "\n".join(rng.sample(WORDS, rng.randint(1, 6))) + "\n"
        if kind == "count_ext":
            ext = rng.choice(["log", "txt", "csv"])
            n = sum(f.endswith("." + ext) for f in files)
            return Task(self.name, "", kind, {"files": files, "answer": str(n),
                                              "question": f"How many .{ext} files are in the current directory?",
                                              "command": f"ls *.{ext} 2>/dev/null | wc -l"})
        if kind == "count_lines":
            name = rng.choice(sorted(files))
            n = files[name].count("\n")
            return Task(self.name, "", kind, {"files": files, "answer": str(n),
                                              "question": f"How many lines does {name} have?",
                                              "command": f"wc -l < {name}"})
        if kind == "sum":
            nums = [rng.randint(1, 99) for _ in range(rng.randint(2, 6))]
            files["numbers.txt"] = "\n".join(map(str, nums)) + "\n"
            return Task(self.name, "", kind, {"files": files, "answer": str(sum(nums)),
                                              "question": "What is the sum of the numbers in numbers.txt?",
                                              "command": "awk '{s+=$1} END {print s}' numbers.txt"})
        name, word = f"{rng.choice(WORDS)}_{rng.randint(1, 99)}.txt", rng.choice(WORDS)
        return Task(self.name, "", kind, {"files": files, "question": f"Create a file {name} containing the word {word}.",
                                          "command": f"echo {word} > {name}", "check": f"cat {name}", "expect": word})

    def new_env(self, task: Task) -> ShellEnv:
        return ShellEnv(task)

    def oracle_step(self, task: Task, messages: list[dict]) -> str:
        d = task.data
        done = assistant_turns(messages)
        if done == 0:
            return act_bash("I will run a command to find out." if "answer" in d else "I will create the file.",
                            d["command"])
        if "answer" not in d:
            return "Think: The file is created.\n\nAct: finish"
        out = messages[-1]["content"].removeprefix("The output of the OS:\n\n").strip()
        return act_answer("The output gives the answer.", out)
