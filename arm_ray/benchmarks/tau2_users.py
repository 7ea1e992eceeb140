"""τ²'s user seat: the scripted user (no model), τ²'s own simulator on an endpoint, or τ²'s simulator prompt
with replies from a model the rollout side serves (`engine`)."""

from __future__ import annotations

import os

from arm_ray.errors import ConfigError


def make_user(u, scenario, generate=None):
    """The user for one episode, from the suite's `user` option and the task's scenario."""
    if u.kind == "scripted":
        return ScriptedTau2User(scenario, u.confirmations)
    from tau2.user.user_simulator import UserSimulator

    if u.kind == "endpoint":
        args = {"api_base": u.base_url, "temperature": u.temperature, "timeout": u.timeout_s, "num_retries": 0}
        if u.api_key_env:
            args["api_key"] = os.environ[u.api_key_env]
        return UserSimulator(instructions=str(scenario), llm=f"openai/{u.model}", llm_args=args)
    if generate is None:
        raise ConfigError("options.user: an engine user's model is served by the rollout side, which has not "
                          "attached one (arm_ray.rollout.user_model.serve_users)")
    return LocalModelUser(instructions=str(scenario), llm=u.path, llm_args={}, generate=generate)


def auth_headers(u) -> dict:
    key = os.environ.get(u.api_key_env or "", "")
    return {"Authorization": f"Bearer {key}"} if key else {}


class ScriptedTau2User:
    """A user without a model: opens with the scenario's reason for calling and what the user knows,
    answers up to `confirmations` questions with a yes, and ends (###STOP###) once the agent has
    replied after acting (the episode sets `acted` when the agent calls a tool)."""

    def __init__(self, scenario, confirmations: int):
        self.scenario, self.confirmations = scenario, confirmations
        self.said, self.acted = 0, False

    def get_init_state(self, message_history=None):
        return None

    def set_seed(self, seed: int) -> None:
        pass

    def stop(self, message=None, state=None) -> None:
        pass

    @classmethod
    def is_stop(cls, message) -> bool:
        from tau2.user.base import STOP

        return bool(message.content) and STOP in message.content

    def generate_next_message(self, message, state):
        from tau2.data_model.message import UserMessage
        from tau2.user.base import STOP

        if self.said == 0:
            text = _opening(self.scenario)
        elif not self.acted and self.said <= self.confirmations:
            text = "Yes, please go ahead."
        else:
            text = f"Thank you, that is all. {STOP}"
        self.said += 1
        return UserMessage(role="user", content=text), state


def _opening(scenario) -> str:
    ins = scenario.instructions
    if isinstance(ins, str):
        return ins
    parts = [ins.reason_for_call.strip()]
    if ins.known_info:
        parts.append(ins.known_info.strip())
    return "\n".join(parts)


class LocalModelUser:
    """τ²'s user simulator (its guidelines, scenario prompt and role flip) with replies from a local model."""

    def __new__(cls, instructions: str, llm: str, llm_args: dict, generate):
        from tau2.data_model.message import MultiToolMessage, UserMessage
        from tau2.user.user_simulator import UserSimulator

        class _User(UserSimulator):
            def generate_next_message(self, message, state):
                if isinstance(message, MultiToolMessage):
                    state.messages.extend(message.tool_messages)
                else:
                    state.messages.append(message)
                chat = [{"role": m.role, "content": m.content or ""}
                        for m in state.system_messages + state.flip_roles()]
                reply = UserMessage(role="user", content=generate(chat, f"{self.llm_args.get('seed')}:{len(chat)}"))
                state.messages.append(reply)
                return reply, state

        return _User(instructions=instructions, llm=llm, llm_args=llm_args)
