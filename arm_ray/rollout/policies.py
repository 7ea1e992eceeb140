"""Batch policies for the agent loop: the suites' oracles, and greedy generation with transformers.

The third policy, the vLLM engine, streams and lives in `vllm_engine.py`.
"""

from __future__ import annotations

from typing import Mapping

from arm_ray.rollout.agent import Turn
from arm_ray.world.base import Suite


class OraclePolicy:
    """The suites' own solvers, as a policy: each reads its episode's conversation like a model would.

    Given several suites, each turn goes to the oracle of its task's suite, so
    one policy serves a run that mixes suites.
    """

    def __init__(self, *suites: Suite):
        self.suites = {s.name: s for s in suites}

    def __call__(self, turns: list[Turn]) -> list[str]:
        return [self.suites[t.task.suite].oracle_step(t.task, t.history or t.messages) for t in turns]


class TransformersPolicy:
    """Greedy `model.generate` over all open episodes of a step together (left padding): a plain baseline.

    `max_new_tokens`: one limit, or a limit per suite name (turns are then
    batched per limit, in their order).
    """

    def __init__(self, model, tokenizer, max_new_tokens: int | Mapping[str, int] = 192, batch_size: int = 32,
                 max_prompt: int = 2048, min_new_tokens: int = 0):
        self.model, self.tok, self.min_new_tokens = model.eval(), tokenizer, min_new_tokens
        self.max_new_tokens, self.batch_size, self.max_prompt = max_new_tokens, batch_size, max_prompt
        self.stop_id = tokenizer.convert_tokens_to_ids("<|im_end|>")
        self.pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else self.stop_id

    def prompt(self, turn: Turn) -> str:
        return self.tok.apply_chat_template(turn.messages, tools=turn.tools, tokenize=False,
                                            add_generation_prompt=True)

    def __call__(self, turns: list[Turn]) -> list[str]:
        if isinstance(self.max_new_tokens, int):
            return self._generate(turns, self.max_new_tokens)
        out: list[str] = [""] * len(turns)
        for limit in sorted({self.max_new_tokens[t.task.suite] for t in turns}):
            picked = [i for i, t in enumerate(turns) if self.max_new_tokens[t.task.suite] == limit]
            for i, text in zip(picked, self._generate([turns[i] for i in picked], limit)):
                out[i] = text
        return out

    def _generate(self, turns: list[Turn], max_new_tokens: int) -> list[str]:
        import torch

        out: list[str] = []
        for i in range(0, len(turns), self.batch_size):
            prompts = [self.prompt(t) for t in turns[i: i + self.batch_size]]
            ids = [self.tok(p, add_special_tokens=False)["input_ids"][-self.max_prompt:] for p in prompts]
            width = max(map(len, ids))
            input_ids = torch.full((len(ids), width), self.pad_id, dtype=torch.long)
            mask = torch.zeros((len(ids), width), dtype=torch.long)
            for r, seq in enumerate(ids):
                input_ids[r, width - len(seq):] = torch.tensor(seq)
                mask[r, width - len(seq):] = 1
            with torch.inference_mode():
                gen = self.model.generate(input_ids=input_ids, attention_mask=mask, do_sample=False,
                                          max_new_tokens=max_new_tokens, min_new_tokens=self.min_new_tokens,
                                          eos_token_id=self.stop_id,
                                          pad_token_id=self.pad_id)
            for row in gen[:, width:].tolist():
                if self.stop_id in row:
                    row = row[: row.index(self.stop_id)]
                out.append(self.tok.decode(row, skip_special_tokens=False))
        return out
