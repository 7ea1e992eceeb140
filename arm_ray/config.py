"""The run's YAML, as pydantic models. All checks that need no weights live here.

Relative paths are relative to the directory the command runs in.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from arm_ray.errors import ConfigError
from arm_ray.roles.parsers import PARSERS, RESPONSE


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ModelRef(_Strict):
    path: str = Field(description="local checkpoint directory or hub id (owner/name)")


class Benchmark(_Strict):
    expert: str | None = Field(None, description="name of its expert in `experts`; none: out-of-domain")
    parser: str | None = Field(None, description="span parser; default: the benchmark's own name")
    role: str | None = Field(None, description="traced role; default: the parser's role")


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


class Weak(_Strict):
    benchmarks: list[str] | None = Field(None, description="explicit list; overrides any evaluation")
    dev_results: str | None = Field(None, description='JSON {"<model>": {"<benchmark>": score}}')
    threshold: float = Field(0.0, description="weak when expert score - backbone score > threshold")
    top_m: int | None = Field(None, gt=0, description="keep only the m largest gaps")

    @model_validator(mode="after")
    def _one_source(self):
        if (self.benchmarks is None) == (self.dev_results is None):
            raise ValueError("give exactly one of `benchmarks` (a list) or `dev_results` (a file)")
        return self


class Resources(_Strict):
    tracers: int = Field(1, gt=0, description="tracer actors")
    tracer_num_cpus: float = Field(1.0, ge=0)
    tracer_num_gpus: float = Field(0.0, ge=0, description="0: trace on CPU")
    coordinator_num_cpus: float = Field(0.1, ge=0)
    torch_threads: int | None = Field(None, gt=0, description="torch threads per tracer (default: its CPUs, >= 1)")


class Trace(_Strict):
    dtype: Literal["float32", "bfloat16", "float16"] = "float32"
    max_tokens_per_batch: int = Field(8192, gt=0)


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
        for r in self.calibration.extra_roles:
            if r != RESPONSE:
                raise ValueError(f"calibration.extra_roles: only {RESPONSE!r} applies to every benchmark, not {r!r}")
        if not self.in_domain:
            raise ValueError("benchmarks: no benchmark names an expert; nothing to merge")
        for b in self.weak.benchmarks or []:
            if b not in self.benchmarks:
                raise ValueError(f"weak.benchmarks: {b!r} is not a benchmark ({', '.join(self.benchmarks)})")
            if self.benchmarks[b].expert is None:
                raise ValueError(f"weak.benchmarks: {b!r} has no expert to donate neurons")
        for i, f in enumerate(self.calibration.files):
            if f.benchmark is not None and f.benchmark not in self.benchmarks:
                raise ValueError(f"calibration.files[{i}].benchmark: {f.benchmark!r} is not a benchmark")
        return self

    # -- derived views --
    @property
    def in_domain(self) -> list[str]:
        """Benchmarks with an expert, in config order: the ones traced, scored and repaired."""
        return [b for b, s in self.benchmarks.items() if s.expert is not None]

    def parser_of(self, b: str) -> str:
        return self.benchmarks[b].parser or b

    def role_of(self, b: str) -> str:
        return self.benchmarks[b].role or PARSERS[self.parser_of(b)].role

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
        mark = getattr(e, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark else str(path)
        raise ConfigError(f"{where}: not valid YAML ({getattr(e, 'problem', e)})") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping at the top level")
    return parse_config(data, str(path))


def parse_config(data: dict, source: str = "<config>") -> RunConfig:
    try:
        return RunConfig.model_validate(data)
    except ValidationError as e:
        raise ConfigError(_format_validation(e, source)) from None
