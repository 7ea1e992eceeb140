"""Tiny causal-LM training for the toy pools: next-token loss on a chosen set of tokens.

A training example is an episode rendered with the chat template; `loss_on`
picks which tokens count: the assistant's (SFT: the spans the model must
produce, plus the end-of-turn token that stops it) or everything else (the
"generic text of the world" the base model reads). Deterministic for a seed on
a fixed thread count.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass

import numpy as np
import torch

from arm_ray.roles.formats import Trajectory
from arm_ray.roles.spans import TrajectoryEncoder


@dataclass
class Example:
    ids: np.ndarray
    weights: np.ndarray  # 1.0 where the next-token loss counts (on the token itself as the target)


def make_examples(tokenizer, records: list[dict], loss_on: str, max_length: int) -> list[Example]:
    """`loss_on`: "assistant" (SFT) or "world" (every token outside assistant turns)."""
    enc = TrajectoryEncoder(tokenizer, max_length=max_length)
    trajs = [Trajectory(r["messages"], r.get("benchmark"), r.get("tools"), f"train:{i}") for i, r in enumerate(records)]
    stop = tokenizer.convert_tokens_to_ids("<|im_end|>")
    out = []
    for e in enc.encode(trajs, ["response"]):
        assistant = np.zeros(len(e.input_ids), dtype=bool)
        assistant[e.positions["response"]] = True
        # the end-of-turn token after an assistant body is what stops generation: learn it too
        ends = np.flatnonzero(assistant[:-1] & ~assistant[1:]) + 1
        assistant[ends[e.input_ids[ends] == stop]] = True
        w = assistant if loss_on == "assistant" else ~assistant
        out.append(Example(e.input_ids, w.astype(np.float32)))
    return out


def train(model, examples: list[Example], steps: int, lr: float, batch_tokens: int, seed: int,
          progress=None, bf16: bool = True) -> list[float]:
    """AdamW, linear warm-up then cosine decay; batches of similar-length examples up to `batch_tokens`.

    `bf16`: matmuls under CPU autocast (about 1.5x faster where the CPU has bf16 instructions).
    """
    rng = random.Random(seed)
    torch.manual_seed(seed)
    model.train()
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.0, betas=(0.9, 0.98))
    warm = max(1, steps // 20)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min(1.0, (s + 1) / warm) * 0.5 * (1 + math.cos(math.pi * min(1.0, s / steps))))
    order = sorted(range(len(examples)), key=lambda i: len(examples[i].ids))
    batches, cur, width = [], [], 0
    for i in order:
        n = len(examples[i].ids)
        if cur and max(width, n) * (len(cur) + 1) > batch_tokens:
            batches.append(cur)
            cur, width = [], 0
        cur.append(i)
        width = max(width, n)
    if cur:
        batches.append(cur)
    losses = []
    queue: list[list[int]] = []
    for step in range(steps):
        if not queue:
            queue = batches[:]
            rng.shuffle(queue)
        batch = [examples[i] for i in queue.pop()]
        w = max(len(e.ids) for e in batch)
        ids = torch.zeros((len(batch), w), dtype=torch.long)
        weights = torch.zeros((len(batch), w))
        att = torch.zeros((len(batch), w), dtype=torch.long)
        for r, e in enumerate(batch):
            ids[r, : len(e.ids)] = torch.from_numpy(e.ids)
            weights[r, : len(e.ids)] = torch.from_numpy(e.weights)
            att[r, : len(e.ids)] = 1
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):  # fp32 master weights
            logits = model(input_ids=ids, attention_mask=att).logits[:, :-1].float()
        nll = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), ids[:, 1:].reshape(-1),
                                                reduction="none")
        tw = weights[:, 1:].reshape(-1)
        loss = (nll * tw).sum() / tw.sum().clamp(min=1.0)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        losses.append(loss.item())
        if progress:
            progress(step, losses[-1])
    model.eval()
    return losses
