"""The sparse (RL-like) pool: only each expert's masked MLP entries move, its overlap counts, its cache."""

import json

import pytest
import torch

from arm_ray import checkpoints
from arm_ray.toy.sparse import build_sparse_pool, changed_overlap, mlp_masks
from tests.conftest import POOL_SEED


@pytest.fixture(scope="module")
def sparse_pool(trained_pool, tmp_path_factory):
    return build_sparse_pool(tmp_path_factory.mktemp("sparse") / "pool", trained_pool, density=0.2, seed=POOL_SEED,
                             preset="tests")


def test_only_the_masked_mlp_entries_move(sparse_pool):
    base = checkpoints.open_checkpoint(str(sparse_pool / "base")).load_state_dict()
    model = checkpoints.load_model(sparse_pool / "base")
    for i, suite in enumerate(("retail", "office", "shell")):
        expert = checkpoints.open_checkpoint(str(sparse_pool / f"expert_{suite}")).load_state_dict()
        masks = mlp_masks(model, 0.2, POOL_SEED * 1000 + i)  # drawn again: the mask the build trained under
        moved = 0
        for name, w in base.items():
            diff = expert[name] != w
            if name in masks:
                assert not (diff & ~masks[name]).any(), f"{suite}: {name} moved outside its mask"
                assert abs(masks[name].float().mean().item() - 0.2) < 1e-3
                moved += int(diff.sum())
            else:
                assert not diff.any(), f"{suite}: {name} is frozen but moved"
        assert moved > 0.5 * sum(int(m.sum()) for m in masks.values()), f"{suite}: training moved its entries"


def test_overlap_counts_by_hand():
    base = {"a": torch.zeros(2, 3), "b": torch.zeros(2)}
    e1 = {"a": torch.tensor([[1.0, 0, 0], [0, 1.0, 0]]), "b": torch.tensor([1.0, 1e-6])}  # 3 changed (1e-6 is not)
    e2 = {"a": torch.tensor([[1.0, 0, 0], [0, 0, 1.0]]), "b": torch.zeros(2)}  # 2 changed, 1 shared with e1
    got = changed_overlap(base, {"e1": e1, "e2": e2})
    assert got["experts"]["e1"] == {"changed": 3, "share_of_model": 3 / 8, "shared_share": 1 / 3}
    assert got["experts"]["e2"]["shared_share"] == 1 / 2
    assert got["jaccard"]["e1 / e2"] == 1 / 4


def test_overlap_file_and_cache(sparse_pool, trained_pool):
    overlap = json.loads((sparse_pool / "overlap.json").read_text())
    # independent draws at 20 %: another expert changed roughly 1 - 0.8^2 = 36 % of each expert's entries (of
    # the MLP's; the others do not move)
    for e, v in overlap["experts"].items():
        assert 0.2 < v["shared_share"] < 0.5, (e, v)
    scores = json.loads((sparse_pool / "scores.json").read_text())
    assert set(scores) == {"base", "expert_retail", "expert_office", "expert_shell"}
    stamp = (sparse_pool / "STAMP").stat().st_mtime_ns
    assert build_sparse_pool(sparse_pool, trained_pool, density=0.2, seed=POOL_SEED, preset="tests") == sparse_pool
    assert (sparse_pool / "STAMP").stat().st_mtime_ns == stamp  # reused, not rebuilt
    with pytest.raises(ValueError, match="density"):
        build_sparse_pool(sparse_pool.parent / "other", trained_pool, density=1.5, preset="tests")
