"""Small corpora for the tokenizer tests, written straight to Parquet (independent of `quark data`)."""

from __future__ import annotations

import sysconfig
from collections.abc import Sequence
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

STDLIB = Path(sysconfig.get_paths()["stdlib"])


def stdlib_sources() -> tuple[list[Path], list[Path]]:
    """(UTF-8, not UTF-8) .py files of the running Python's standard library, site-packages excluded."""
    utf8, other = [], []
    for path in sorted(STDLIB.rglob("*.py")):
        if path.relative_to(STDLIB).parts[0] == "site-packages" or not path.is_file():
            continue
        try:
            path.read_bytes().decode("utf-8")
            utf8.append(path)
        except UnicodeDecodeError:
            other.append(path)
    return utf8, other


def write_dataset(home: Path, name: str, shards: Sequence[Sequence[str | None]], **extra_columns) -> list[Path]:
    """`data/<name>/train/shard-XXXXX.parquet`, one per list of texts, each with a `text` column."""
    paths = []
    for i, texts in enumerate(shards):
        path = home / "data" / name / "train" / f"shard-{i:05d}.parquet"
        path.parent.mkdir(parents=True, exist_ok=True)
        columns = {"text": pa.array(list(texts), pa.string()),
                   **{k: [v] * len(texts) for k, v in extra_columns.items()}}
        pq.write_table(pa.table(columns), path)
        paths.append(path)
    return paths


def split_evenly(items: list, parts: int) -> list[list]:
    size = -(-len(items) // parts)
    return [items[i:i + size] for i in range(0, len(items), size)]
