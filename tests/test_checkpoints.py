"""Opening, checking and writing checkpoints: clear errors, atomic output."""

import json

import pytest
import torch

from arm_ray import checkpoints
from arm_ray.errors import CheckpointError
from tests.conftest import copy_checkpoint


def test_open_reads_headers(perturbed_pool):
    c = checkpoints.open_checkpoint(str(perturbed_pool / "base"), "base")
    info = c.tensors["model.layers.0.mlp.down_proj.weight"]
    assert info.shape == (64, 128) and info.dtype == "F32"


def test_truncated_and_garbage_safetensors(perturbed_pool, tmp_path):
    ck = copy_checkpoint(perturbed_pool / "base", tmp_path / "m")
    f = ck / "model.safetensors"
    f.write_bytes(f.read_bytes()[:-10])
    with pytest.raises(CheckpointError, match=r"model.safetensors: corrupt or truncated"):
        checkpoints.open_checkpoint(str(ck))
    f.write_bytes(b"\x05\x00\x00\x00\x00\x00\x00\x00{abc}")
    with pytest.raises(CheckpointError, match="header is not JSON"):
        checkpoints.open_checkpoint(str(ck))
    f.unlink()
    with pytest.raises(CheckpointError, match="holds no .safetensors"):
        checkpoints.open_checkpoint(str(ck))


def test_missing_dir_and_hub_id_without_network(tmp_path, monkeypatch):
    with pytest.raises(CheckpointError, match="no such checkpoint directory"):
        checkpoints.open_checkpoint(str(tmp_path / "nope"))
    # `pool/base` with a `pool/` here is a missing local directory, not a hub id to download
    (tmp_path / "pool").mkdir()
    monkeypatch.chdir(tmp_path)
    with pytest.raises(CheckpointError, match=r"^pool/base: no such checkpoint directory \(relative paths are "
                                              rf"relative to the working directory {tmp_path}\); pool/ exists"):
        checkpoints.open_checkpoint("pool/base")


def test_compatibility_names_models_and_field(perturbed_pool, tmp_path):
    base = checkpoints.open_checkpoint(str(perturbed_pool / "base"), "base")
    other = copy_checkpoint(perturbed_pool / "expert_tau_bench", tmp_path / "e")
    cfg = json.loads((other / "config.json").read_text())
    cfg["num_hidden_layers"] = 3
    (other / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(CheckpointError, match="base and odd differ in config field 'num_hidden_layers': 2 vs 3"):
        checkpoints.check_compatible([base, checkpoints.open_checkpoint(str(other), "odd")])


def test_compatibility_shapes_and_tokenizer(perturbed_pool, tmp_path):
    from safetensors.torch import load_file, save_file

    base = checkpoints.open_checkpoint(str(perturbed_pool / "base"), "base")
    other = copy_checkpoint(perturbed_pool / "expert_tau_bench", tmp_path / "e")
    sd = load_file(other / "model.safetensors")
    sd["model.norm.weight"] = torch.ones(65)
    save_file(sd, other / "model.safetensors")
    with pytest.raises(CheckpointError, match=r"shape of model.norm.weight: \[64\] vs \[65\]"):
        checkpoints.check_compatible([base, checkpoints.open_checkpoint(str(other), "odd")])
    other2 = copy_checkpoint(perturbed_pool / "expert_tau_bench", tmp_path / "e2")
    tj = json.loads((other2 / "tokenizer.json").read_text())
    tj["model"]["vocab"]["zzz_new"] = 10_000
    (other2 / "tokenizer.json").write_text(json.dumps(tj))
    with pytest.raises(CheckpointError, match="different tokenizers"):
        checkpoints.check_compatible([base, checkpoints.open_checkpoint(str(other2), "odd")])


def test_read_slice_reads_rows_and_columns(perturbed_pool):
    from safetensors.torch import load_file

    c = checkpoints.open_checkpoint(str(perturbed_pool / "base"))
    full = load_file(perturbed_pool / "base" / "model.safetensors")
    import numpy as np

    idx = np.array([0, 1, 2, 7, 9, 100])
    name = "model.layers.1.mlp.down_proj.weight"
    assert torch.equal(c.read_slice(name, 1, idx), full[name][:, idx])
    name = "model.layers.1.mlp.up_proj.weight"
    assert torch.equal(c.read_slice(name, 0, idx), full[name][idx])


def test_sharded_write_round_trip(perturbed_pool, tmp_path):
    src = checkpoints.open_checkpoint(str(perturbed_pool / "base"))
    sd = src.load_state_dict()
    checkpoints.write_state_dict(sd, tmp_path / "out", src, max_shard_bytes=200_000, readme="# hi\n")
    out = checkpoints.open_checkpoint(str(tmp_path / "out"))
    assert len(out.files) > 1 and (tmp_path / "out" / checkpoints.WEIGHT_INDEX).is_file()
    back = out.load_state_dict()
    assert all(torch.equal(back[k], sd[k]) for k in sd)
    assert (tmp_path / "out" / "tokenizer.json").is_file() and (tmp_path / "out" / "README.md").is_file()
    with pytest.raises(CheckpointError, match="already exists"):
        checkpoints.write_state_dict(sd, tmp_path / "out", src)


def test_read_tensor_reads_one_tensor_or_its_rows(perturbed_pool):
    ck = checkpoints.open_checkpoint(str(perturbed_pool / "base"))
    sd = ck.load_state_dict()
    name = "model.layers.0.mlp.down_proj.weight"
    assert torch.equal(ck.read_tensor(name), sd[name])
    assert torch.equal(ck.read_tensor(name, rows=(3, 9)), sd[name][3:9])
    assert ck.tensor_bytes(name) == sd[name].numel() * 4 and ck.row_bytes(name) == sd[name].shape[1] * 4


def test_write_tensors_refuses_a_tensor_outside_the_layout_and_a_missing_one(perturbed_pool, tmp_path):
    from arm_ray.checkpoints import write_tensors

    src = checkpoints.open_checkpoint(str(perturbed_pool / "base"))
    sd = src.load_state_dict()
    with pytest.raises(CheckpointError, match="tensor extra.weight is not in"):
        write_tensors([("extra.weight", torch.zeros(2))], src, tmp_path / "a")
    first = sorted(sd)[0]
    with pytest.raises(CheckpointError, match="was produced"):
        write_tensors(((k, v) for k, v in sorted(sd.items()) if k != first), src, tmp_path / "b")
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()
