"""The row format every dataset shard shares, and the few helpers that read and write shards.

Every dataset (ingested or blended) is `data/<name>/train/shard-XXXXX.parquet` with exactly these
columns, so the tokenizer, `mix`, `export` and `remove` never need to know where a shard came from.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

SPLIT = "train"
COMPRESSION = "zstd"
SCHEMA = pa.schema([
    ("id", pa.string()),           # first 16 hex digits of sha256: stable across rebuilds
    ("text", pa.string()),         # cleaned text (normalised whitespace, PII scrubbed)
    ("source", pa.string()),       # path or URL the document came from
    ("license", pa.string()),      # SPDX id where known, else "unknown"
    ("language", pa.string()),     # programming language (python, c, ...) or natural language code (en, ...)
    ("code_blocks", pa.int32()),   # fenced code blocks in the text
    ("chars", pa.int64()),
    ("sha256", pa.string()),       # of `text`, the exact-dedup key
])
COLUMNS = tuple(SCHEMA.names)


def shard_name(index: int) -> str:
    return f"shard-{index:05d}.parquet"


def list_shards(dataset_folder: Path) -> list[Path]:
    """The dataset's shards in name order (the order every reader and the manifest use)."""
    return sorted((Path(dataset_folder) / SPLIT).glob("shard-*.parquet"))


def read_dataset(dataset_folder: Path) -> pa.Table:
    """All rows of a dataset, shards concatenated in order."""
    shards = list_shards(dataset_folder)
    if not shards:
        return SCHEMA.empty_table()
    return pa.concat_tables(pq.read_table(path, schema=SCHEMA) for path in shards)


def write_shards(table: pa.Table, dataset_folder: Path, rows_per_shard: int = 50_000) -> list[Path]:
    """Write `table` as shard-00000.parquet, shard-00001.parquet, ... (deterministic bytes for equal input)."""
    folder = Path(dataset_folder) / SPLIT
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for index, start in enumerate(range(0, table.num_rows, rows_per_shard)):
        path = folder / shard_name(index)
        pq.write_table(table.slice(start, rows_per_shard).cast(SCHEMA), path, compression=COMPRESSION)
        paths.append(path)
    return paths


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def describe_shard(path: Path) -> dict[str, Any]:
    """A shard as provenance records it: file, sha256 of its bytes, rows."""
    return {"file": f"{SPLIT}/{path.name}", "sha256": file_sha256(path), "rows": pq.ParquetFile(path).metadata.num_rows}


def document_row(_writer: Any, document: Any) -> dict[str, Any]:
    """datatrove DiskWriter adapter: a cleaned Document to one row of SCHEMA."""
    meta = document.metadata
    return {
        "id": document.id,
        "text": document.text,
        "source": meta["source"],
        "license": meta.get("license") or "unknown",
        "language": meta.get("language") or "unknown",
        "code_blocks": int(meta.get("code_blocks", 0)),
        "chars": int(meta["chars"]),
        "sha256": meta["sha256"],
    }
