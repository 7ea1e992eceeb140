"""eval.parquet: one row per episode, written atomically."""

from __future__ import annotations

from pathlib import Path

COLUMNS = ("model", "benchmark", "suite", "split", "task_id", "reward", "success", "steps", "invalid_actions",
           "finish_reason", "trajectory")


def schema():
    import pyarrow as pa

    return pa.schema([("model", pa.string()), ("benchmark", pa.string()), ("suite", pa.string()),
                      ("split", pa.string()), ("task_id", pa.string()), ("reward", pa.float64()),
                      ("success", pa.bool_()), ("steps", pa.int32()), ("invalid_actions", pa.int32()),
                      ("finish_reason", pa.string()), ("trajectory", pa.string())])


def write_eval(path: str | Path, rows: list[dict]) -> None:
    """Rows sorted by (model, benchmark, split, task order) so the file does not depend on scheduling."""
    import pyarrow as pa

    from arm_ray.atomic import atomic_write_parquet

    rows = sorted(rows, key=_order)
    table = pa.Table.from_pylist([{c: r[c] for c in COLUMNS} for r in rows], schema=schema())
    atomic_write_parquet(Path(path), table)


def read_eval(path: str | Path) -> list[dict]:
    import pyarrow.parquet as pq

    return pq.read_table(path).to_pylist()


def _order(r: dict):
    head, _, index = r["task_id"].rpartition("-")
    return (r["model"], r["benchmark"], r["split"], head, int(index) if index.isdigit() else index)
