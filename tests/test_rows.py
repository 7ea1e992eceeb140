"""Blocks of rows cover the first axis once, in order, and put back together bit for bit."""

import torch

from arm_ray.rows import assemble, spans


def test_spans_cover_every_row_once_with_a_short_tail():
    assert spans((10, 3), 4) == [(0, 4), (4, 8), (8, 10)]
    assert spans((4,), 4) == [(0, 4)]
    assert spans((3, 2), 8) == [(0, 3)]


def test_assemble_rebuilds_the_tensor_and_keeps_its_dtype():
    t = torch.randn(11, 5, dtype=torch.float64)
    got = assemble(tuple(t.shape), ((r, t[r[0]:r[1]].clone()) for r in spans(tuple(t.shape), 3)))
    assert got.dtype == torch.float64 and torch.equal(got, t)
