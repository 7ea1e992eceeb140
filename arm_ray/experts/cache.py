"""How toy pools are cached and written: a STAMP of the build's inputs, JSONL files written atomically."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path


def pool_stamp(inputs: dict) -> str:
    """A short hash of everything a pool is built from; it names the build in the pool's STAMP file."""
    return hashlib.sha256(json.dumps(inputs, sort_keys=True).encode()).hexdigest()[:16]


def is_built(out: Path, stamp: str) -> bool:
    """A pool directory is reused only when its STAMP matches the inputs it was built from."""
    f = out / "STAMP"
    return f.is_file() and f.read_text().strip() == stamp


def write_jsonl(path: Path, records: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with tmp.open("w", encoding="utf-8") as f:
        for rec in records:
            f.write(json.dumps(rec, ensure_ascii=False) + "\n")
    os.replace(tmp, path)
