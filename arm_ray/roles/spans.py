"""Character spans -> token positions, and whole trajectories -> traced inputs.

A token belongs to a span when its characters overlap it. Conventions:
`token` marks the span's own tokens (the paper's choice); `predict` marks the
positions whose NEXT token is in the span (where the model decides it).
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from itertools import chain

import numpy as np

from arm_ray.errors import DataError
from arm_ray.roles.formats import Trajectory
from arm_ray.roles.parsers import find_spans
from arm_ray.roles.render import ChatRenderer

CONVENTIONS = ("token", "predict")


@dataclass
class SpanInfo:
    turn: int  # index of the assistant message in the trajectory's messages
    role: str
    start: int  # character offsets in the rendered text
    end: int


@dataclass
class Encoded:
    """One trajectory, ready to trace: token ids and, per role, the traced positions."""

    input_ids: np.ndarray  # int64 [n]
    positions: dict[str, np.ndarray]  # role -> sorted int64 positions
    spans: list[SpanInfo] = field(default_factory=list)
    text: str = ""
    offsets: np.ndarray | None = None  # [n, 2] character offsets of the tokens
    truncated: bool = False
    source: str = ""
    benchmark: str | None = None


def token_mask(offsets: np.ndarray, spans: list[tuple[int, int]], text_len: int) -> np.ndarray:
    """Boolean [n_tokens]: the token's characters overlap one of the spans (vectorised)."""
    n = len(offsets)
    if not spans or n == 0:
        return np.zeros(n, dtype=bool)
    marks = np.zeros(text_len + 1, dtype=np.int32)
    for s, e in spans:
        marks[s] += 1
        marks[e] -= 1
    covered = np.cumsum(marks)[:text_len] > 0  # character c lies in some span
    prefix = np.concatenate([[0], np.cumsum(covered, dtype=np.int64)])
    starts = np.minimum(offsets[:, 0], text_len)
    ends = np.minimum(offsets[:, 1], text_len)
    hit = prefix[ends] - prefix[starts] > 0
    # zero-width tokens (some special tokens) count when they sit inside a span
    empty = ends <= starts
    if empty.any():
        hit[empty] = covered[np.minimum(starts[empty], text_len - 1)] & (starts[empty] < text_len)
    return hit


def positions_from_mask(mask: np.ndarray, convention: str) -> np.ndarray:
    idx = np.flatnonzero(mask)
    if convention == "predict":
        idx = idx - 1
        idx = idx[idx >= 0]
    elif convention != "token":
        raise ValueError(f"unknown position convention {convention!r}; expected one of {CONVENTIONS}")
    return idx.astype(np.int64)


class TrajectoryEncoder:
    """Render, find spans, tokenise (batched, fast tokenizer) and map spans to positions."""

    CHUNK = 64  # trajectories per tokenizer call: small enough to overlap, large enough for its thread pool

    def __init__(self, tokenizer, convention: str = "token", max_length: int | None = None):
        if not getattr(tokenizer, "is_fast", False):
            raise DataError("a fast tokenizer is required (its offset mapping locates spans)")
        if convention not in CONVENTIONS:
            raise DataError(f"position convention {convention!r}: expected one of {CONVENTIONS}")
        self.tokenizer = tokenizer
        # The Rust tokenizer itself, with truncation and padding off (the tokenizer.json may set them):
        # the same ids and offsets as the transformers call, without its per-token Python conversion.
        from tokenizers import Tokenizer

        self._backend = Tokenizer.from_str(tokenizer.backend_tokenizer.to_str())
        self._backend.no_truncation()
        self._backend.no_padding()
        self.renderer = ChatRenderer(tokenizer)
        self.convention = convention
        self.max_length = max_length

    def encode(self, trajs: list[Trajectory], roles: dict[str, list[str]] | list[str],
               parser_of: dict[str, str] | None = None, keep_text: bool = False) -> list[Encoded]:
        """`roles`: the roles to mark, per benchmark (dict) or for every trajectory (list).

        `parser_of` maps a benchmark name to its parser name (default: the same name).
        Work goes in chunks: the Rust tokenizer (which releases the GIL) encodes chunk i on a
        helper thread while this thread renders and parses chunk i+1.
        """
        parser_of = parser_of or {}
        with ThreadPoolExecutor(max_workers=1) as pool:
            jobs = []
            for i in range(0, len(trajs), self.CHUNK):
                chunk = trajs[i: i + self.CHUNK]
                parsed = [self._render_and_parse(t, roles, parser_of) for t in chunk]
                texts = [r.text for r, _, _ in parsed]
                jobs.append((chunk, parsed, pool.submit(self._backend.encode_batch, texts, add_special_tokens=False)))
            return [e for chunk, parsed, job in jobs for e in self._finish(chunk, parsed, job.result(), keep_text)]

    def _render_and_parse(self, traj, roles, parser_of):
        """The rendered trajectory, the roles wanted for it, and their character spans."""
        r = self.renderer.render(traj)
        want = roles if isinstance(roles, list) else roles.get(traj.benchmark or "", [])
        parser = parser_of.get(traj.benchmark, traj.benchmark) if traj.benchmark else None
        spans = []
        for role in want:
            for turn, start, end in r.turns:
                try:
                    found = find_spans(parser, role, r.text[start:end])
                except KeyError as e:
                    raise DataError(f"{traj.source}: {e.args[0]}") from None
                spans.extend(SpanInfo(turn, role, start + s, start + e) for s, e in found)
        return r, want, spans

    def _finish(self, trajs, parsed, batch, keep_text) -> list[Encoded]:
        out = []
        for traj, (r, want, spans), enc in zip(trajs, parsed, batch):
            ids = np.asarray(enc.ids, dtype=np.int64)
            offs = np.fromiter(chain.from_iterable(enc.offsets), dtype=np.int64, count=2 * len(ids)).reshape(-1, 2)
            truncated = self.max_length is not None and len(ids) > self.max_length
            if truncated:
                ids, offs = ids[: self.max_length], offs[: self.max_length]
            positions = {}
            for role in want:
                mask = token_mask(offs, [(s.start, s.end) for s in spans if s.role == role], len(r.text))
                positions[role] = positions_from_mask(mask, self.convention)
            out.append(Encoded(ids, positions, spans, r.text if keep_text else "",
                               offs if keep_text else None, truncated, traj.source, traj.benchmark))
        return out
