"""A tiny Llama written as an F32 GGUF file with the `gguf` package's writer, laid out as llama.cpp writes one
(q and k rows permuted, tied embeddings without an `output` tensor, a BPE tokenizer with its merges)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

TINY = dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=2, num_key_value_heads=1,
            head_dim=32)
TEXTS = ["I am Ana Diaz, zip 78286. What is the total of my order #W9533?", "How many lines does orbit.txt have?",
         "Think: I will run a command to find out. Act: bash", "SELECT name FROM staff WHERE dept = 'Sales';",
         '<tool_call>{"name": "find_user_id", "arguments": {"zip": "1"}}</tool_call>'] * 4


def _permute(w: np.ndarray, n_head: int, n_head_kv: int) -> np.ndarray:
    """llama.cpp's q/k row order (transformers' GGUF loader undoes it)."""
    if n_head != n_head_kv:
        n_head = n_head_kv
    return w.reshape(n_head, 2, w.shape[0] // n_head // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def write_tiny_llama_gguf(path: Path, seed: int = 0, chat_template: str | None = None) -> dict[str, torch.Tensor]:
    """Write the file; returns the model's state dict (what reading it back must give, bit for bit)."""
    import gguf
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    from arm_ray.pretrained.smollm2 import CHAT_TEMPLATE
    from arm_ray.toy.chat import train_bpe_tokenizer

    path = Path(path)
    tok_dir = path.parent / f"{path.stem}-tokenizer"
    train_bpe_tokenizer(tok_dir, TEXTS, 400)
    tok = AutoTokenizer.from_pretrained(tok_dir)
    spec = json.loads((tok_dir / "tokenizer.json").read_text())
    vocab = spec["model"]["vocab"]
    for t in spec["added_tokens"]:
        vocab[t["content"]] = t["id"]
    tokens = [t for t, _ in sorted(vocab.items(), key=lambda kv: kv[1])]
    special = {t["content"] for t in spec["added_tokens"] if t["special"]}
    merges = [m if isinstance(m, str) else " ".join(m) for m in spec["model"]["merges"]]
    stop, pad = tok.convert_tokens_to_ids("<|im_end|>"), tok.convert_tokens_to_ids("<|endoftext|>")
    start = tok.convert_tokens_to_ids("<|im_start|>")

    torch.manual_seed(seed)
    cfg = LlamaConfig(vocab_size=len(tokens), max_position_embeddings=2048, rms_norm_eps=1e-5, tie_word_embeddings=True,
                      bos_token_id=start, eos_token_id=stop, pad_token_id=pad, **TINY)
    model = LlamaForCausalLM(cfg)
    with torch.no_grad():  # norms away from 1 too, so a dropped or misnamed tensor shows
        for n, p in model.named_parameters():
            if "norm" in n:
                p.uniform_(0.5, 1.5)
    state = {k: v.clone() for k, v in model.state_dict().items() if k != "lm_head.weight"}

    w = gguf.GGUFWriter(str(path), "llama")
    h, n_head, n_kv = TINY["hidden_size"], TINY["num_attention_heads"], TINY["num_key_value_heads"]
    w.add_name("tiny-llama")
    w.add_block_count(TINY["num_hidden_layers"])
    w.add_context_length(2048)
    w.add_embedding_length(h)
    w.add_feed_forward_length(TINY["intermediate_size"])
    w.add_head_count(n_head)
    w.add_head_count_kv(n_kv)
    w.add_layer_norm_rms_eps(1e-5)
    w.add_rope_freq_base(10000.0)
    w.add_rope_dimension_count(TINY["head_dim"])
    w.add_vocab_size(len(tokens))
    w.add_file_type(gguf.LlamaFileType.ALL_F32)
    w.add_tokenizer_model("gpt2")
    w.add_tokenizer_pre("default")
    w.add_token_list(tokens)
    w.add_token_types([gguf.TokenType.CONTROL if t in special else gguf.TokenType.NORMAL for t in tokens])
    w.add_token_merges(merges)
    w.add_bos_token_id(start)
    w.add_eos_token_id(stop)
    w.add_pad_token_id(pad)
    w.add_add_bos_token(False)
    w.add_chat_template(chat_template or CHAT_TEMPLATE)
    names = gguf.get_tensor_name_map(gguf.MODEL_ARCH.LLAMA, TINY["num_hidden_layers"])
    for k, v in state.items():
        arr = v.numpy().astype(np.float32)
        if ".q_proj." in k:
            arr = _permute(arr, n_head, n_head)
        elif ".k_proj." in k:
            arr = _permute(arr, n_head, n_kv)
        w.add_tensor(names.get_name(k, try_suffixes=(".weight",)), np.ascontiguousarray(arr))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return state
