"""Files and directories written atomically: a temp file (or hidden temp directory) beside the target, fsynced,
then renamed, so a crash never leaves a complete-looking output. Every output a run writes goes through here
(JSON, Markdown, Parquet, model directories)."""

from __future__ import annotations

import os
import shutil
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from arm_ray.errors import CheckpointError


@contextmanager
def atomic_dir(final: Path, overwrite: bool = False) -> Iterator[Path]:
    """Write into a hidden temp dir beside `final`, then rename: a crash never leaves a complete-looking dir.

    Every file below it (subdirectories included) is made world-readable and fsynced before the rename.
    """
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    if final.exists() and not overwrite:
        raise CheckpointError(f"{final} already exists")
    tmp = final.with_name(f".{final.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    try:
        yield tmp
        for f in sorted(tmp.rglob("*")):  # data on disk before the rename makes it visible
            if f.is_file():
                os.chmod(f, 0o644)  # safetensors writes 0600; a model is meant to be shared
                with f.open("rb") as fh:
                    os.fsync(fh.fileno())
        if final.exists():
            old = final.with_name(f".{final.name}.old-{os.getpid()}")
            os.replace(final, old)
            os.replace(tmp, final)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """`data` to `path` via a temp file, on disk before the rename makes it visible."""
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    with tmp.open("wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_parquet(path: Path, table) -> None:
    """A pyarrow table to `path` via a temp file and a rename."""
    import pyarrow.parquet as pq

    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    pq.write_table(table, tmp)
    os.replace(tmp, path)
