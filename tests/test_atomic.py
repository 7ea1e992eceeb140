"""Atomic outputs: nothing half-written is ever visible under the final name."""

import os

import pytest

from arm_ray import atomic


def test_atomic_dir_leaves_nothing_on_crash(tmp_path):
    final = tmp_path / "model"
    with pytest.raises(RuntimeError):
        with atomic.atomic_dir(final) as tmp:
            (tmp / "model.safetensors").write_bytes(b"half")
            raise RuntimeError("killed")
    assert not final.exists() and list(tmp_path.iterdir()) == []


def test_atomic_files_replace_whole_or_not_at_all(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = tmp_path / "report.json"
    atomic.atomic_write_text(path, "old")
    atomic.atomic_write_text(path, "new ✓")
    assert path.read_text() == "new ✓" and sorted(os.listdir(tmp_path)) == ["report.json"]
    table = pa.table({"x": [1, 2, 3]})
    atomic.atomic_write_parquet(tmp_path / "t.parquet", table)
    assert pq.read_table(tmp_path / "t.parquet").equals(table)
    with pytest.raises(FileNotFoundError):  # a missing parent is an error, not a silent partial write
        atomic.atomic_write_bytes(tmp_path / "no" / "f", b"x")
    assert sorted(os.listdir(tmp_path)) == ["report.json", "t.parquet"]
