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
          progress=None, bf16: bool = True, logits_where_counted: bool = False,
          micro_batch_tokens: int | None = None) -> list[float]:
    """AdamW, linear warm-up then cosine decay; batches of similar-length examples up to `batch_tokens`.

    `bf16`: matmuls under CPU autocast (about 1.5x faster where the CPU has bf16 instructions).
    `logits_where_counted`: the output layer only at positions whose next token counts (the same loss, summed
    in another order): with a large vocabulary (SmolLM2: 49,152) the full logits and their gradient are most
    of a step's memory, and SFT counts a small share of the tokens.
    `micro_batch_tokens`: a batch's rows forwarded and backpropagated in parts of at most this many (padded)
    tokens, their gradients summed before the step: the same update with a fraction of the activations' memory.
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
        total = torch.tensor(float(sum(e.weights[1:].sum() for e in batch))).clamp(min=1.0)
        opt.zero_grad(set_to_none=True)
        loss = 0.0
        for part in _micro_batches(batch, micro_batch_tokens):
            part_loss = _loss(model, part, total, bf16, logits_where_counted)
            part_loss.backward()
            loss += part_loss.item()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        losses.append(loss)
        if progress:
            progress(step, losses[-1])
    model.eval()
    return losses


def _micro_batches(batch: list[Example], limit: int | None) -> list[list[Example]]:
    if limit is None:
        return [batch]
    parts, cur = [], []
    for e in batch:
        if cur and max(len(x.ids) for x in cur + [e]) * (len(cur) + 1) > limit:
            parts.append(cur)
            cur = []
        cur.append(e)
    return parts + [cur]


def _loss(model, batch: list[Example], total: torch.Tensor, bf16: bool, logits_where_counted: bool) -> torch.Tensor:
    """The batch part's summed next-token loss over the counted tokens, divided by the whole batch's count."""
    w = max(len(e.ids) for e in batch)
    ids = torch.zeros((len(batch), w), dtype=torch.long)
    weights = torch.zeros((len(batch), w))
    att = torch.zeros((len(batch), w), dtype=torch.long)
    for r, e in enumerate(batch):
        ids[r, : len(e.ids)] = torch.from_numpy(e.ids)
        weights[r, : len(e.ids)] = torch.from_numpy(e.weights)
        att[r, : len(e.ids)] = 1
    device = next(model.parameters()).device
    ids, weights, att = ids.to(device), weights.to(device), att.to(device)
    tw = weights[:, 1:].reshape(-1)
    with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):  # fp32 master weights
        if logits_where_counted:
            hidden = model.model(input_ids=ids, attention_mask=att).last_hidden_state[:, :-1]
            keep = torch.nonzero(tw).squeeze(1)
            logits = model.lm_head(hidden.reshape(-1, hidden.shape[-1]).index_select(0, keep)).float()
        else:
            logits = model(input_ids=ids, attention_mask=att).logits[:, :-1].float()
    if logits_where_counted:
        nll = torch.nn.functional.cross_entropy(logits, ids[:, 1:].reshape(-1).index_select(0, keep),
                                                reduction="none")
        return (nll * tw.index_select(0, keep)).sum() / total.to(device)
    nll = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), ids[:, 1:].reshape(-1),
                                            reduction="none")
    return (nll * tw).sum() / total.to(device)
