"""A suite of your own: the environments your agents are evaluated in, plugged in by a dotted name.

    python -m examples.custom_suite          (from the repository root)

A suite draws seeded tasks (`_make_task`), opens one environment per episode
(`make_env`: `reset`, `step`, `reward`) and knows how to solve each task
(`oracle_step`, used to check the suite itself and to make training data).
Name it in a config as

    benchmarks:
      agentbench_os: {expert: shell_expert, suite: examples.custom_suite:AdditionSuite}

and the rollout actors run it like the built-in suites (the module must be
importable where they run: `ray job submit --working-dir .` ships it). Here the agent must add
two numbers and answer in AgentBench OS's format (`Act: answer(...)`), so the
`agentbench_os` parser marks its action spans. Run as a script, it scores the
suite's oracle (1.0) and a policy that always answers 0 through the same agent
loop the rollout actors use.
"""

from __future__ import annotations

import random
import re

from arm_ray.world.base import Env, Start, StepResult, Suite, Task

_ANSWER = re.compile(r"Act:[ \t]*answer\((.*)\)")


class AdditionEnv(Env):
    def reset(self) -> Start:
        a, b = self.task.data["a"], self.task.data["b"]
        self.state = {"answer": None}
        return Start([{"role": "system", "content": "Answer with 'Act: answer(<number>)'."},
                      {"role": "user", "content": f"What is {a} + {b}?"}])

    def step(self, action_text: str) -> StepResult:
        m = _ANSWER.search(action_text)
        if m is None:  # not an action of this suite's format: counted as invalid, the episode ends
            return StepResult([], done=True, invalid=True, finish_reason="invalid")
        self.state["answer"] = m.group(1).strip()
        return StepResult([], done=True, finish_reason="answer")

    def reward(self) -> float:
        return float(self.state["answer"] == str(self.task.data["a"] + self.task.data["b"]))


class AdditionSuite(Suite):
    name = "addition"
    parser = "agentbench_os"  # the roles parser whose format the actions use
    max_steps = 1

    def _make_task(self, rng: random.Random, index: int) -> Task:
        return Task(self.name, "", "sum", {"a": rng.randint(0, 999), "b": rng.randint(0, 999)})

    def make_env(self, task: Task) -> Env:
        return AdditionEnv(task)

    def oracle_step(self, task: Task, messages: list[dict]) -> str:
        return f"Think: add them.\n\nAct: answer({task.data['a'] + task.data['b']})"


def main() -> None:
    from arm_ray.rollout.policies import OraclePolicy
    from arm_ray.rollout.run import SuiteRun, rollout

    runs = [SuiteRun("addition", "examples.custom_suite:AdditionSuite", "test", 20)]
    oracle = rollout(OraclePolicy(AdditionSuite()), "oracle", runs)
    zero = rollout(lambda turns: ["Act: answer(0)"] * len(turns), "always-zero", runs)
    for name, rows in (("oracle", oracle), ("always-zero", zero)):
        print(f"{name}: mean reward {sum(r['reward'] for r in rows) / len(rows):.2f} over {len(rows)} test tasks")


if __name__ == "__main__":
    main()
