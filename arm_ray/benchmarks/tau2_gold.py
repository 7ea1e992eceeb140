"""τ²'s gold replay: a task's gold actions as our tool calls, then a reply holding its required outputs; and
the plumbing check's policy that drops the last write that changes the database (τ² must score it 0)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from arm_ray.benchmarks.tau2_env import tool_call_text
from arm_ray.world.base import Task

if TYPE_CHECKING:
    from arm_ray.benchmarks.tau2 import Tau2Suite


def gold_actions(suite: Tau2Suite, task: Task) -> list:
    crit = suite.tau2_task(task).evaluation_criteria
    return [a for a in (crit.actions or []) if a.requestor == "assistant"] if crit else []


def replay(suite: Tau2Suite, task: Task, actions: list, messages: list[dict]) -> str:
    """The next of `actions` as a tool call, then a reply holding the task's required outputs."""
    done = sum(m["role"] == "assistant" for m in messages) - 1  # τ²'s greeting opens every conversation
    if done < len(actions):
        return tool_call_text(actions[done].name, actions[done].arguments)
    crit = suite.tau2_task(task).evaluation_criteria
    outputs = (crit.communicate_info or []) if crit else []
    return "Done. " + " ".join(outputs) if outputs else "Your request is complete."


def last_effective_write(suite: Tau2Suite, task: Task) -> int | None:
    """Index of the last gold action that changes the database; None if none does.

    Dropping it always changes the final database (nothing after it does), where dropping an earlier
    write may not: some gold writes fail by design (a return the policy forbids), and some are undone
    later (an address changed and changed back).
    """
    from tau2.data_model.message import ToolCall

    env, last = suite.environment(), None
    for i, a in enumerate(gold_actions(suite, task)):
        before = env.get_db_hash()
        env.get_response(ToolCall(id=str(i), name=a.name, arguments=a.arguments))
        if env.get_db_hash() != before:
            last = i
    return last


class GoldWithoutWrite:
    """A plumbing check's policy: the gold replay without the task's last effective write (τ² must score 0)."""

    def __init__(self, suite: Tau2Suite):
        self.suite, self.drop = suite, {}

    def __call__(self, turns) -> list[str]:
        out = []
        for t in turns:
            if t.task.task_id not in self.drop:
                self.drop[t.task.task_id] = self.suite.last_effective_write(t.task)
            kept = [a for i, a in enumerate(self.suite.gold_actions(t.task)) if i != self.drop[t.task.task_id]]
            out.append(self.suite.replay(t.task, kept, t.messages))
        return out
