"""Before any weight is loaded: open and check every input, encode the calibration data.

`prepare(cfg)` runs on the driver before Ray starts (so bad input fails in
seconds) and again inside the coordinator, and returns the run's `Context`.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
from dataclasses import dataclass, field
from pathlib import Path

from arm_ray import checkpoints, pool
from arm_ray.architectures import mlp_names
from arm_ray.config import RunConfig
from arm_ray.devices import slow_bf16_warning
from arm_ray.errors import ConfigError, DataError
from arm_ray.roles.formats import load_trajectories, require_clean
from arm_ray.roles.spans import TrajectoryEncoder
from arm_ray.saliency import Packed, pack_trajectories
from arm_ray.suites import check_suite, get_suite
from arm_ray.tracing import Sources

# what a run directory holds; a directory with any of them is a run, replaced only with --overwrite
RUN_OUTPUTS = ("model", "backbone", "run_config.json", "report.json", "report.md", "saliency.parquet", "eval.parquet",
               "aos.png", "transplant.png", "results.png", "results", "analysis", ".arm_ray")


@dataclass
class Context:
    cfg: RunConfig
    base: checkpoints.Checkpoint
    experts: dict[str, checkpoints.Checkpoint]
    recipes: list[pool.Recipe]
    packed: dict[str, Packed]  # benchmark -> packed calibration
    dev_scores: dict | None  # from weak.dev_results
    warnings: list[str] = field(default_factory=list)

    def sources(self, device: str) -> Sources:
        devices = tuple(self.cfg.trace.devices) if self.cfg.trace.devices else None
        return Sources(str(self.base.path), {n: str(c.path) for n, c in self.experts.items()},
                       self.cfg.trace.dtype, device, devices)


def check_output_dir(out: Path, overwrite: bool, probe: bool = True, resume: bool = False) -> None:
    """Before any work: no run is replaced by accident (`resume`: continued), no other run is writing there, it
    is writable (`probe=False`: not tried, for a driver that does not see the workers' storage)."""
    present = [n for n in RUN_OUTPUTS if (out / n).exists()]
    if present and not (overwrite or resume):
        if (out / "report.json").exists():
            raise ConfigError(f"{out} already holds a run ({', '.join(present)}); pass --overwrite to replace it")
        raise ConfigError(f"{out} holds an unfinished run ({', '.join(present)}; no report.json); pass --resume to "
                          "continue it or --overwrite to replace it")
    RunLock(out).refuse_if_held()
    if not probe:
        return
    probe_dir = out if out.exists() else next(p for p in out.parents if p.exists())
    probe = probe_dir / f".arm_ray_write_probe-{os.getpid()}"
    try:
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as e:
        raise ConfigError(f"--output {out}: cannot write in {probe_dir} ({type(e).__name__}: {e.strerror or e}); "
                          "relative paths are relative to the working directory") from None


class RunLock:
    """`out/.arm_ray.lock`, created exclusively and holding host and pid: a second run into the same directory
    is refused while the first lives. A lock left by a dead process on this host is taken over."""

    def __init__(self, out: Path):
        self.out, self.path = Path(out), Path(out) / ".arm_ray.lock"

    def _holder(self) -> tuple[str, int] | None:
        try:
            host, pid = self.path.read_text().split()
            return host, int(pid)
        except (OSError, ValueError):
            return None

    def refuse_if_held(self) -> None:
        holder = self._holder()
        if holder is None:
            return
        host, pid = holder
        if host == socket.gethostname() and not _alive(pid):
            return  # stale: taken over when the run starts
        raise ConfigError(f"{self.out} is in use by another run (host {host}, pid {pid}); wait for it, or delete "
                          f"{self.path} if that run is gone")

    def __enter__(self) -> "RunLock":
        for _ in range(2):
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
            except FileExistsError:
                self.refuse_if_held()
                self.path.unlink(missing_ok=True)  # a dead process's lock
                continue
            with os.fdopen(fd, "w") as f:
                f.write(f"{socket.gethostname()} {os.getpid()}\n")
            return self
        raise ConfigError(f"{self.out}: could not take {self.path}")

    def __exit__(self, *exc) -> None:
        self.path.unlink(missing_ok=True)


def remove_stale_outputs(out: Path) -> None:
    """Never leave an old report beside a new model: the run's files go before it starts (its directories
    are replaced atomically when rewritten)."""
    for name in RUN_OUTPUTS:
        if (out / name).is_file():
            (out / name).unlink()
    tmps = [t for d in ("", ".arm_ray/", ".arm_ray/traces/", ".work/", ".work/candidates/")
            for t in out.glob(f"{d}.*.tmp-*")]
    for tmp in tmps:  # a killed run's half-written files (atomic writes: a temp name, then a rename)
        pid = tmp.name.rsplit("-", 1)[-1]
        if pid.isdigit() and not _alive(int(pid)):
            shutil.rmtree(tmp) if tmp.is_dir() else tmp.unlink()
    shutil.rmtree(out / "results", ignore_errors=True)  # benchmarks' own results files, written per run
    shutil.rmtree(out / "analysis", ignore_errors=True)  # `arm_ray.analyze` of the run this one replaces


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, another user's
        pass
    return True


def prepare(cfg: RunConfig) -> Context:
    """Every check that can fail, before any weight is loaded: checkpoints, operators, suites, data, roles, weak."""
    base = checkpoints.open_checkpoint(cfg.base.path, "base")
    experts = {n: checkpoints.open_checkpoint(cfg.experts[n].path, n) for n in cfg.expert_names()}
    seen: dict[Path, str] = {Path(base.path).resolve(): "base"}
    for n, c in experts.items():  # one checkpoint under two names would be merged with itself, silently
        where = Path(c.path).resolve()
        if where in seen:
            raise ConfigError(f"experts.{n}.path: {c.path} is the same checkpoint as "
                              f"{'base.path' if seen[where] == 'base' else f'experts.{seen[where]}.path'}")
        seen[where] = n
    checkpoints.check_compatible([base, *experts.values()])
    layers = base.config.get("num_hidden_layers", 0)
    if cfg.trace.devices and len(cfg.trace.devices) > layers:
        raise ConfigError(f"trace.devices: {len(cfg.trace.devices)} devices for a model of {layers} layers; each "
                          "device takes at least one layer")
    try:
        mlp_names(base.config.get("model_type", ""))
    except KeyError as e:
        raise ConfigError(f"base: {e.args[0]}") from None
    recipes = [pool.Recipe(op.name, op.method, dict(op.parameters), cfg.seed if op.seed is None else op.seed, op.aim)
               for op in cfg.operators]
    for i, r in enumerate(recipes):
        pool.validate(r, len(experts), f"operators[{i}] ({r.name})")
    for b in cfg.evaluated:  # each suite's options, and that its environment can run here (before any rollout)
        suite = get_suite(cfg.benchmarks[b].suite, f"benchmarks.{b}.suite", cfg.benchmarks[b].options)
        try:
            check_suite(suite, b)
        finally:
            suite.close()  # what the check started (a database server) is not needed in the driver
    packed, warnings = encode_calibration(cfg, base)
    context = base.config.get("max_position_embeddings")
    if isinstance(context, int) and cfg.calibration.max_length > context:
        warnings.append(f"calibration.max_length: {cfg.calibration.max_length} tokens exceeds the base model's "
                        f"max_position_embeddings ({context}); longer trajectories are traced past its context")
    dev_scores = load_dev_scores(cfg) if cfg.weak.dev_results else None
    if dev_scores is not None:
        extra = sorted({b for row in dev_scores.values() if isinstance(row, dict) for b in row} - set(cfg.benchmarks))
        if extra:
            warnings.append(f"weak.dev_results: {cfg.weak.dev_results} scores benchmarks the config does not have "
                            f"({', '.join(extra)}); they are ignored")
    traced_on_cpu = cfg.resources.tracer_num_gpus == 0 and not any("cuda" in d for d in cfg.trace.devices or [])
    asks = [("trace.dtype", cfg.trace.dtype, traced_on_cpu)]
    if cfg.evaluation is not None:  # rollouts
        asks.append(("evaluation.engine.dtype", cfg.evaluation.engine.dtype, cfg.resources.rollout_num_gpus == 0))
    for where, dtype, on_cpu in asks:
        slow = slow_bf16_warning(where, dtype, on_cpu)  # this machine's CPU: the embedded cluster's node
        if slow:
            warnings.append(slow)
    return Context(cfg, base, experts, recipes, packed, dev_scores, warnings)


def encode_calibration(cfg: RunConfig, base: checkpoints.Checkpoint) -> tuple[dict[str, Packed], list[str]]:
    """Each in-domain benchmark's calibration, packed for tracing with groups (b, role) for its roles."""
    encoded, warnings = encode_benchmarks(cfg, base)
    packed = {}
    for b, enc in encoded.items():
        roles = list(dict.fromkeys([cfg.role_of(b), *cfg.calibration.extra_roles]))
        packed[b] = pack_trajectories(enc, [(b, r) for r in roles], cfg.trace.max_tokens_per_batch)
    return packed, warnings


def encode_benchmarks(cfg: RunConfig, base: checkpoints.Checkpoint) -> tuple[dict[str, list], list[str]]:
    """Each in-domain benchmark's calibration trajectories, tokenized with their role positions, in file order."""
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(base.path)
    encoder = TrajectoryEncoder(tok, cfg.calibration.positions, cfg.calibration.max_length)
    by_bench: dict[str, list] = {b: [] for b in cfg.in_domain}
    sources: dict[str, list[str]] = {b: [] for b in cfg.in_domain}  # the files each benchmark's records came from
    warnings = []
    for i, f in enumerate(cfg.calibration.files):
        loaded = load_trajectories(f.path, f.benchmark, f.sample, cfg.calibration.seed)
        if loaded.n_records == 0:
            raise DataError(f"calibration.files[{i}]: {f.path} holds no records")
        warnings += require_clean(loaded, f.path, cfg.calibration.allow_bad_records)
        if f.sample is not None and f.sample > len(loaded.trajectories):
            warnings.append(f"calibration.files[{i}].sample: {f.sample} asked, {f.path} has "
                            f"{len(loaded.trajectories)} usable records; all of them are used")
        for t in loaded.trajectories:
            if t.benchmark is None:
                raise DataError(f"{t.source}: record has no `benchmark` field and calibration.files[{i}] "
                                "names none")
            if t.benchmark not in cfg.benchmarks:
                raise DataError(f"{t.source}: benchmark {t.benchmark!r} is not in the config's benchmarks")
            if t.benchmark in by_bench:  # out-of-domain benchmarks are evaluated, never traced
                by_bench[t.benchmark].append(t)
                if f.path not in sources[t.benchmark]:
                    sources[t.benchmark].append(f.path)
    encoded = {}
    for b, trajs in by_bench.items():
        role = cfg.role_of(b)
        if not trajs:
            raise DataError(f"benchmark {b}: no calibration trajectory (check calibration.files)")
        roles = list(dict.fromkeys([role, *cfg.calibration.extra_roles]))
        encoded[b] = encoder.encode(trajs, {b: roles}, {b: cfg.parser_of(b)})
        truncated = sum(e.truncated for e in encoded[b])
        if truncated:
            warnings.append(f"benchmark {b}: {truncated} of {len(encoded[b])} trajectories cut to "
                            f"calibration.max_length={cfg.calibration.max_length} tokens")
        if not any(len(e.positions.get(role, ())) for e in encoded[b]):
            raise DataError(f"benchmark {b}: no calibration trajectory in {', '.join(sources[b])} has a {role!r} "
                            f"token (parser {cfg.parser_of(b)}); check the data or the role")
    return encoded, warnings


def load_dev_scores(cfg: RunConfig) -> dict:
    path = Path(cfg.weak.dev_results)
    try:
        scores = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"weak.dev_results: {path}: no such file") from None
    except json.JSONDecodeError as e:
        raise ConfigError(f"{path}:{e.lineno}: not valid JSON ({e.msg})") from None
    needed = [(cfg.benchmarks[b].expert, b) for b in cfg.in_domain]
    needed += [(op.name, b) for op in cfg.operators for b in cfg.in_domain]  # any candidate may be selected
    for model, b in needed:
        value = scores.get(model, {}).get(b) if isinstance(scores.get(model), dict) else None
        if not isinstance(value, (int, float)):
            raise ConfigError(f'{path}: expected a number at ["{model}"]["{b}"] (dev score of {model} on {b})')
    return scores
