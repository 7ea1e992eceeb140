"""One τ² episode in our agent loop: τ²'s Orchestrator stepped one message at a time, our policy's reply
parsed (roles layer's `tau_bench` parser) into τ² tool calls or a text message, τ²'s evaluator for the reward."""

from __future__ import annotations

import json
import zlib
from typing import TYPE_CHECKING

from arm_ray.benchmarks.tau2_users import ScriptedTau2User
from arm_ray.roles.parsers import tau_bench as find_tool_calls
from arm_ray.world.base import Env, Start, StepResult, Task

if TYPE_CHECKING:
    from arm_ray.benchmarks.tau2 import Tau2Suite


def tool_call_text(name: str, arguments: dict) -> str:
    """A tool call as a Qwen3-style model writes it."""
    return "<tool_call>\n" + json.dumps({"name": name, "arguments": arguments}, ensure_ascii=False) + "\n</tool_call>"


def parse_reply(text: str, turn: int) -> tuple[list[dict] | None, str, bool]:
    """A reply as τ² sees it: (tool calls, text, invalid).

    Tool calls: every `<tool_call>` block; the text around them is dropped (τ²
    takes either text or tool calls). A block that is not {"name": str,
    "arguments": object} still goes to τ² as a call, so τ² answers it with its
    own error message; it counts as an invalid action, as does an empty reply.
    """
    spans = find_tool_calls(text)
    if not spans:
        visible = text.split("</think>")[-1].strip() if "<think>" in text else text.strip()
        return None, visible, not visible
    calls, invalid = [], False
    for j, (s, e) in enumerate(spans):
        body = text[s:e].removeprefix("<tool_call>").removesuffix("</tool_call>").strip()
        try:
            call = json.loads(body)
            name, args = call["name"], call.get("arguments", {})
            if not isinstance(name, str) or not isinstance(args, dict):
                raise TypeError("expected {\"name\": string, \"arguments\": object}")
        except (ValueError, KeyError, TypeError) as err:
            # τ² answers an unknown tool with its error message; the reason stays visible in the name
            name, args, invalid = f"invalid_tool_call: {type(err).__name__}", {}, True
        calls.append({"id": f"call_{turn}_{j}", "name": name, "arguments": args})
    return calls, "", invalid


class Tau2Env(Env):
    """One τ² episode: τ²'s Orchestrator, environment, user and evaluator; our policy is the agent."""

    def __init__(self, task: Task, suite: Tau2Suite):
        super().__init__(task)
        self.suite = suite
        self.sim = None

    def reset(self) -> Start:
        s, t = self.suite, self.task
        data = s.data
        from tau2.agent.llm_agent import AGENT_INSTRUCTION, SYSTEM_PROMPT
        from tau2.orchestrator.orchestrator import Orchestrator

        self.environment = s.environment()
        self.tools = {x["function"]["name"]: x for x in data.schemas}
        self.agent = _Relay()
        seed = zlib.crc32(t.task_id.encode())
        self.user = s.make_user(t)
        self.orch = Orchestrator(s.domain, self.agent, self.user, self.environment, s.tau2_task(t),
                                 max_steps=s.options.max_steps, max_errors=s.options.max_errors, seed=seed)
        self.orch.initialize()
        self.turns = 0
        system = SYSTEM_PROMPT.format(agent_instruction=AGENT_INSTRUCTION, domain_policy=data.policy)
        return Start([{"role": "system", "content": system}] + self._advance(0), data.schemas)

    def step(self, action_text: str) -> StepResult:
        from tau2.data_model.message import AssistantMessage, ToolCall
        from tau2.data_model.simulation import TerminationReason

        calls, text, invalid = parse_reply(action_text, self.turns)
        self.turns += 1
        if calls is None and not text:  # τ² rejects an empty message as an agent error
            self.orch.done, self.orch.termination_reason = True, TerminationReason.AGENT_ERROR
            return StepResult([], done=True, invalid=True, finish_reason=self.orch.termination_reason.value)
        if calls is not None:
            invalid = invalid or any(not self._fits(c) for c in calls)
            msg = AssistantMessage(role="assistant", tool_calls=[ToolCall(**c) for c in calls])
        else:
            msg = AssistantMessage(role="assistant", content=text)
        self.agent.next = msg
        if calls is not None and isinstance(self.user, ScriptedTau2User):
            self.user.acted = True
        before = len(self.orch.trajectory)
        self._step()  # the agent's turn: τ² takes the relayed message
        new = self._advance(before + 1)
        reason = self.orch.termination_reason.value if self.orch.done else None
        return StepResult(new, done=self.orch.done, invalid=invalid, finish_reason=reason)

    def _fits(self, call: dict) -> bool:
        """A call τ² can run: a known tool, its required arguments, no others."""
        tool = self.tools.get(call["name"])
        if tool is None:
            return False
        params = tool["function"]["parameters"]
        keys = set(call["arguments"])
        return set(params.get("required", [])) <= keys <= set(params.get("properties", {}))

    def _step(self) -> None:
        """One τ² step, then τ²'s own limits (as its `run` checks them: not while a tool call is pending)."""
        from tau2.data_model.simulation import TerminationReason
        from tau2.orchestrator.orchestrator import Role

        o = self.orch
        o.step()
        if o.done or o.to_role == Role.ENV:
            return
        if o.step_count >= o.max_steps:
            o.done, o.termination_reason = True, TerminationReason.MAX_STEPS
        elif o.num_errors >= o.max_errors:
            o.done, o.termination_reason = True, TerminationReason.TOO_MANY_ERRORS

    def _advance(self, start: int) -> list[dict]:
        """Step τ² until the agent is to speak or the episode ends; τ²'s messages from `start` on, as chat turns."""
        from tau2.orchestrator.orchestrator import Role

        while not self.orch.done and self.orch.to_role != Role.AGENT:
            self._step()
        return [_chat(m) for m in self.orch.trajectory[start:]]

    def reward(self) -> float:
        from tau2.data_model.simulation import SimulationRun, TerminationReason
        from tau2.evaluator.evaluator import EvaluationType, evaluate_simulation

        o = self.orch
        if not o.done:  # our loop stopped it (turn limit, context): τ² scores an unfinished episode 0
            o.done, o.termination_reason = True, TerminationReason.MAX_STEPS
        messages = o.get_trajectory()
        sim = SimulationRun(id=self.task.task_id, task_id=o.task.id, start_time="", end_time="", duration=0.0,
                            termination_reason=o.termination_reason, messages=messages,
                            trial=self.task.data["trial"], seed=o.seed)
        sim.reward_info = evaluate_simulation(sim, o.task, EvaluationType.ALL, solo_mode=False,
                                              domain=self.suite.data.registered)
        self.sim = sim
        return float(sim.reward_info.reward)

    def details(self) -> dict | None:
        """τ²'s record of the episode (messages without wall-clock fields, reward info), for eval rows."""
        if self.sim is None:
            return None
        sim = self.sim.model_dump(mode="json", exclude={"timestamp", "start_time", "end_time", "duration"})
        for m in sim["messages"]:
            m.pop("timestamp", None)
        return {"tau2": sim}


def _chat(m) -> dict:
    """A τ² message as a turn of our conversation (what the agent model sees)."""
    if m.role == "tool":
        return {"role": "tool", "content": m.content or ""}
    if m.role == "assistant" and m.tool_calls:
        return {"role": "assistant", "content": "\n".join(tool_call_text(c.name, c.arguments) for c in m.tool_calls)}
    return {"role": m.role, "content": m.content or ""}


class _Relay:
    """τ²'s agent seat: hands the Orchestrator the message our policy wrote."""

    next = None

    def get_init_state(self, message_history=None):
        return None

    def generate_next_message(self, message, state):
        msg, self.next = self.next, None
        return msg, state

    def stop(self, message=None, state=None) -> None:
        pass

    @classmethod
    def is_stop(cls, message) -> bool:
        return False

    def set_seed(self, seed: int) -> None:
        pass
