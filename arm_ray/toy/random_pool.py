"""Random pools of a real model's shape, written straight to disk: for memory and speed checks at scale.

The base is random; each expert is the base plus small noise, so a merge does real work. Tensors are made one at
a time (on any device) and written through `checkpoints.write_tensors`, so a pool of 8B models is written with one
shard in memory. Weights are a function of the seed, the tensor's position and the expert's index only.
"""

from __future__ import annotations

from pathlib import Path

import torch

from arm_ray import checkpoints

QWEN3_8B = dict(hidden_size=4096, intermediate_size=12288, num_attention_heads=32, num_key_value_heads=8,
                head_dim=128, vocab_size=151936, max_position_embeddings=32768, tie_word_embeddings=False,
                num_hidden_layers=36)
# about 300 M parameters with an LLM's proportions (the embedding and head are about a fifth)
QWEN3_300M = dict(hidden_size=1024, intermediate_size=3072, num_attention_heads=16, num_key_value_heads=4,
                  head_dim=64, vocab_size=32000, max_position_embeddings=4096, tie_word_embeddings=False,
                  num_hidden_layers=20)
_SAFETENSORS = {torch.bfloat16: "BF16", torch.float32: "F32", torch.float16: "F16"}


def write_random_pool(root: Path, shape: dict, n_experts: int, dtype: torch.dtype = torch.bfloat16,
                      device: str = "cpu", seed: int = 0, noise: float = 0.1) -> dict[str, Path]:
    """`root/base`, `root/expert_0`, ...: Qwen3 checkpoints of `shape`; returns name -> path."""
    from transformers import AutoModelForCausalLM, Qwen3Config

    cfg = Qwen3Config(**shape, dtype=str(dtype).removeprefix("torch."))
    with torch.device("meta"):
        shapes = {n: tuple(p.shape) for n, p in AutoModelForCausalLM.from_config(cfg).named_parameters()}
    side = root / ".config"
    cfg.save_pretrained(side)
    paths = {}
    for index, name in enumerate(["base"] + [f"expert_{i}" for i in range(n_experts)]):
        source = checkpoints.Checkpoint(name, side, cfg.to_dict(), {
            n: checkpoints.TensorInfo("", _SAFETENSORS[dtype], s) for n, s in shapes.items()})

        def tensors(index=index):
            g = torch.Generator(device)
            for i, (n, s) in enumerate(sorted(shapes.items())):
                if "norm" in n:
                    t = torch.ones(s, device=device)
                else:
                    t = torch.randn(s, generator=g.manual_seed(seed * 1_000_003 + i), device=device) * 0.02
                if index:
                    t += torch.randn(s, generator=g.manual_seed((seed + index) * 1_000_003 + i), device=device) \
                        * 0.02 * noise
                yield n, t.to(dtype)

        checkpoints.write_tensors(tensors(), source, root / name, max_shard_bytes=4 << 30, overwrite=True)
        paths[name] = root / name
    return paths
