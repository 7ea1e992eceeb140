"""What every toy model shares: the Qwen3-style chat template, the tokenizer trainer, the model config, shapes.

Both toy pools (`perturbed`: untrained experts for `configs/quick.yaml`;
`trained`: SFT experts on the offline world for `configs/demo.yaml`) and the
tests build their models from these.
"""

from __future__ import annotations

from pathlib import Path

# the trained pool's model, and the quick pool's: narrow and shallow, so copying emerges within the CPU budget
TOY_SHAPE = dict(hidden_size=128, intermediate_size=384, num_hidden_layers=4, num_attention_heads=4,
                 num_key_value_heads=2, head_dim=32)
# the tests' pools: the smallest shape vLLM's CPU attention takes (head_dim >= 32)
TINY_SHAPE = dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=2,
                  num_key_value_heads=1, head_dim=32)

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

    # a shape may set max_position_embeddings (τ²'s prompts outgrow 4096 toy tokens)
    shape = {"max_position_embeddings": 4096, **shape}
    return Qwen3Config(vocab_size=vocab_size, tie_word_embeddings=True, rms_norm_eps=1e-6, rope_theta=10000.0,
                       bos_token_id=None, eos_token_id=eos_token_id, pad_token_id=pad_token_id, **shape)
