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

This file is the suite and its options; beside it: `tau2_data` (a domain's data
and the copy-on-read database), `tau2_env` (the episode and the reply parser),
`tau2_users` (the user simulators), `tau2_gold` (the gold replay) and
`tau2_results` (τ²'s results file).

`trials: k` runs each task k times (task ids `...#t`), for τ-bench's pass^k.
Telecom is not offered: its tasks need a user who runs tools on a simulated
phone, which the scripted user cannot do.
"""

from __future__ import annotations

import json
import os
import urllib.error
import urllib.request
from pathlib import Path
from typing import Annotated, Any, Literal, Union

from pydantic import Field, field_validator

from arm_ray.benchmarks import tau2_gold, tau2_results
from arm_ray.benchmarks.tau2_data import Tau2Domain, load_domain
from arm_ray.benchmarks.tau2_env import Tau2Env
from arm_ray.benchmarks.tau2_users import auth_headers, make_user
from arm_ray.errors import ConfigError
from arm_ray.suites import SuiteOptions
from arm_ray.world.base import TRIAL, Suite, Task, check_split, split_map


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
            req = urllib.request.Request(url, headers=auth_headers(u))
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


    # -- the gold replay (tau2_gold): τ²'s gold actions, then a reply holding the required outputs --
    def gold_actions(self, task: Task) -> list:
        return tau2_gold.gold_actions(self, task)

    def oracle_step(self, task: Task, messages: list[dict]) -> str:
        return tau2_gold.replay(self, task, self.gold_actions(task), messages)

    def replay(self, task: Task, actions: list, messages: list[dict]) -> str:
        return tau2_gold.replay(self, task, actions, messages)

    def last_effective_write(self, task: Task) -> int | None:
        return tau2_gold.last_effective_write(self, task)

    # -- users (tau2_users) --
    def make_user(self, task: Task):
        return make_user(self.options.user, self.tau2_task(task).user_scenario, self._generate)

    def resume_inputs(self):
        """An endpoint user: what the endpoint serves (its /models list), so a run resumed against a redeployed
        endpoint rolls out again rather than mixing two user models."""
        u = self.options.user
        if u.kind != "endpoint":
            return None
        url = u.base_url.rstrip("/") + "/models"
        try:
            with urllib.request.urlopen(urllib.request.Request(url, headers=auth_headers(u)),
                                        timeout=min(u.timeout_s, 10)) as r:
                listed = json.loads(r.read().decode()).get("data", [])
        except (urllib.error.URLError, OSError, ValueError) as e:
            raise ConfigError(f"options.user: endpoint {u.base_url} does not list its models ({url}: "
                              f"{getattr(e, 'reason', e)})") from None
        # `created` is the time of the request on some servers (vLLM): not part of what is served
        return sorted(({k: m.get(k) for k in ("id", "root", "max_model_len", "owned_by")} for m in listed
                       if isinstance(m, dict)), key=lambda m: str(m["id"]))

    def user_model(self) -> dict | None:
        u = self.options.user
        return u.model_dump(exclude={"kind"}) if u.kind == "engine" else None

    def serve_user(self, generate) -> None:
        self._generate = generate

    # -- τ²'s own results format (tau2_results) --
    def write_results(self, rows: list[dict], path: Path, model: str) -> None:
        """One model's episodes on this suite as τ²'s `Results` JSON."""
        tau2_results.write_results(self, rows, path, model)


class Tau2Retail(Tau2Suite):
    name, domain = "tau2_retail", "retail"


class Tau2Airline(Tau2Suite):
    name, domain = "tau2_airline", "airline"
