"""Build the demo's expert pool offline: tokenizer, tiny Qwen3 base, perturbed experts, calibration data.

Until trained toy experts exist, each expert is the base plus small dense noise
and a stronger change on its own random subset of MLP neurons, so the experts'
salient neurons really differ. Everything is deterministic for a seed and
cached by its inputs (a stamp file), so a second run reuses the pool.

Named from a config by the dotted string `arm_ray.demo:build_demo_pool`.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

from arm_ray.checkpoints import atomic_dir
from arm_ray.demo_data import corpus_lines, make_trajectories

# A Qwen3-style chat template (written for this project): tools in the system
# turn, assistant tool calls as <tool_call>{json}</tool_call>, tool results as
# <tool_response> in a user turn. Every turn renders the same whatever follows,
# so prefixes of a conversation render as prefixes of its text.
CHAT_TEMPLATE = (
    "{% if tools %}<|im_start|>system\n"
    "{% if messages and messages[0].role == 'system' %}{{ messages[0].content }}\n\n{% endif %}"
    "Tools you can call, one JSON schema per line:\n<tools>"
    "{% for tool in tools %}\n{{ tool | tojson }}{% endfor %}\n</tools>\n"
    "Call a tool by writing <tool_call>{\"name\": ..., \"arguments\": {...}}</tool_call>.<|im_end|>\n"
    "{% elif messages and messages[0].role == 'system' %}<|im_start|>system\n{{ messages[0].content }}<|im_end|>\n"
    "{% endif %}"
    "{% for m in messages %}"
    "{% if m.role == 'system' and loop.first %}"
    "{% elif m.role == 'assistant' %}<|im_start|>assistant\n{{ m.content }}"
    "{% for call in m.tool_calls or [] %}"
    "{% if loop.first and m.content %}\n{% endif %}{% if not loop.first %}\n{% endif %}"
    "<tool_call>\n{\"name\": \"{{ call.function.name }}\", \"arguments\": "
    "{% if call.function.arguments is string %}{{ call.function.arguments }}"
    "{% else %}{{ call.function.arguments | tojson }}{% endif %}}\n</tool_call>"
    "{% endfor %}<|im_end|>\n"
    "{% elif m.role == 'tool' %}<|im_start|>user\n<tool_response>\n{{ m.content }}\n</tool_response><|im_end|>\n"
    "{% else %}<|im_start|>{{ m.role }}\n{{ m.content }}<|im_end|>\n"
    "{% endif %}"
    "{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)

SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
MARKUP_TOKENS = ["<tool_call>", "</tool_call>", "<tool_response>", "</tool_response>", "<think>", "</think>",
                 "<answer>", "</answer>"]

DEFAULT_SHAPE = dict(hidden_size=128, intermediate_size=384, num_hidden_layers=4, num_attention_heads=4,
                     num_key_value_heads=2, head_dim=32)
BENCHMARKS = ("tau_bench", "officebench", "agentbench_os")


def build_tokenizer(out: Path, seed: int = 0, vocab_size: int = 640):
    return train_bpe_tokenizer(out, corpus_lines(seed), vocab_size)


# words with at most one trailing space, single digits, punctuation runs (with at most one leading space), whitespace
ISOLATED_WORDS = r"[A-Za-z]+ ?|[0-9]| ?[^A-Za-z0-9\s]+|\s+"


def train_bpe_tokenizer(out: Path, texts, vocab_size: int, split_digits: bool = False, isolate_words: bool = False):
    """A byte-level BPE trained on `texts`, with the chat template and markup tokens; saved to `out`.

    `split_digits`: one token per digit (as Qwen's tokenizer does), so a number tokenizes the same in a
    sentence and inside JSON. `isolate_words`: a word never carries the space or quote before it, only
    the space after it (`Li `, `Patel` in `I am Li Patel` and in `{"name": "Li Patel"}`), so a value
    copied from prose into JSON is the same token sequence (tiny models copy by matching tokens), and
    the token before a value is the word that introduces it (`am `), not a bare space.
    """
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    steps = [pre_tokenizers.Digits(individual_digits=True)] if split_digits else []
    if isolate_words:
        steps.append(pre_tokenizers.Split(Regex(ISOLATED_WORDS), behavior="isolated"))
    steps.append(pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=not isolate_words))
    tok.pre_tokenizer = pre_tokenizers.Sequence(steps) if len(steps) > 1 else steps[0]
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=SPECIAL_TOKENS + MARKUP_TOKENS,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator(texts, trainer=trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|im_end|>", pad_token="<|endoftext|>",
                                   additional_special_tokens=["<|im_start|>"])
    fast.chat_template = CHAT_TEMPLATE
    fast.save_pretrained(out)
    return fast


def qwen3_config(vocab_size: int, shape: dict, eos_token_id: int | None = None, pad_token_id: int | None = None):
    from transformers import Qwen3Config

    return Qwen3Config(vocab_size=vocab_size, max_position_embeddings=4096, tie_word_embeddings=True,
                       rms_norm_eps=1e-6, rope_theta=10000.0, bos_token_id=None, eos_token_id=eos_token_id,
                       pad_token_id=pad_token_id, **shape)


def build_models(out: Path, tokenizer_dir: Path, seed: int, shape: dict, benchmarks=BENCHMARKS,
                 neuron_fraction: float = 0.15, noise: float = 0.02, boost: float = 1.6) -> dict[str, Path]:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tokenizer_dir)
    cfg = qwen3_config(len(tok), shape)
    torch.manual_seed(seed)
    base = AutoModelForCausalLM.from_config(cfg, dtype=torch.float32)
    paths = {"base": out / "base"}
    base.save_pretrained(paths["base"])
    tok.save_pretrained(paths["base"])
    base_sd = {k: v.clone() for k, v in base.state_dict().items()}
    d_ff = cfg.intermediate_size
    for i, bench in enumerate(benchmarks):
        g = torch.Generator().manual_seed(seed * 1000 + i + 1)
        sd = {}
        for name, w in base_sd.items():
            sd[name] = w + noise * w.abs().mean() * torch.randn(w.shape, generator=g) if w.is_floating_point() else w
        n = max(1, int(neuron_fraction * d_ff))
        for layer in range(cfg.num_hidden_layers):
            idx = torch.randperm(d_ff, generator=g)[:n]
            pre = f"model.layers.{layer}.mlp."
            sd[pre + "gate_proj.weight"][idx] *= boost
            sd[pre + "up_proj.weight"][idx] *= boost
            sd[pre + "down_proj.weight"][:, idx] *= boost
        base.load_state_dict(sd)
        name = f"expert_{bench}"
        paths[name] = out / name
        base.save_pretrained(paths[name])
        tok.save_pretrained(paths[name])
    return paths


def write_jsonl(path: Path, records: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with tmp.open("w", encoding="utf-8") as f:
        for rec in records:
            f.write(json.dumps(rec, ensure_ascii=False) + "\n")
    os.replace(tmp, path)


def write_calibration(out: Path, n_per_benchmark: int, seed: int, benchmarks=BENCHMARKS) -> None:
    """tau_bench and agentbench_os as OpenAI JSONL, officebench as ShareGPT JSONL (as SIMIA ships it)."""
    out.mkdir(parents=True, exist_ok=True)
    for bench in benchmarks:
        write_jsonl(out / f"{bench}.jsonl", make_trajectories(bench, n_per_benchmark, seed))


def build_demo_pool(out: str, seed: int = 0, n_calibration: int = 16, shape: dict | None = None,
                    benchmarks: list[str] | tuple[str, ...] = BENCHMARKS) -> Path:
    """Build (or reuse) the pool in `out`: tokenizer/, base/, expert_<benchmark>/, calibration/."""
    shape = {**DEFAULT_SHAPE, **(shape or {})}
    out_path = Path(out)
    stamp = pool_stamp({"v": 1, "seed": seed, "n": n_calibration, "shape": shape, "benchmarks": list(benchmarks)})
    if is_built(out_path, stamp):
        return out_path
    with atomic_dir(out_path, overwrite=True) as tmp:
        build_tokenizer(tmp / "tokenizer", seed)
        build_models(tmp, tmp / "tokenizer", seed, shape, tuple(benchmarks))
        write_calibration(tmp / "calibration", n_calibration, seed, tuple(benchmarks))
        (tmp / "STAMP").write_text(stamp + "\n")
    return out_path


def pool_stamp(inputs: dict) -> str:
    """A short hash of everything a pool is built from; it names the build in the pool's STAMP file."""
    return hashlib.sha256(json.dumps(inputs, sort_keys=True).encode()).hexdigest()[:16]


def is_built(out: Path, stamp: str) -> bool:
    """A pool directory is reused only when its STAMP matches the inputs it was built from."""
    f = out / "STAMP"
    return f.is_file() and f.read_text().strip() == stamp
