"""`quark data export`: one dataset as a single JSONL or Parquet file, written atomically."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq

from quark.atomic import atomic_file
from quark.data import catalog
from quark.data.shards import COMPRESSION, SCHEMA, list_shards
from quark.errors import QuarkError
from quark.home import Home

FORMATS = ("jsonl", "parquet")


def export_dataset(home: Home, name: str, fmt: str, output: Path) -> dict[str, Any]:
    if fmt not in FORMATS:
        raise QuarkError(f"unknown format {fmt!r}: choose one of {', '.join(FORMATS)}")
    catalog.require(home, name)
    output = Path(output).expanduser()
    if output.is_dir():
        raise QuarkError(f"{output} is a folder: give a file name, like {output / (name + '.' + fmt)}")
    if not output.parent.is_dir():
        raise QuarkError(f"no such folder: {output.parent}")
    docs = 0
    if fmt == "jsonl":
        with atomic_file(output, "w", encoding="utf-8") as handle:
            for shard in list_shards(home.dataset_dir(name)):
                for batch in pq.ParquetFile(shard).iter_batches(batch_size=1024):
                    for row in batch.to_pylist():
                        handle.write(json.dumps(row, ensure_ascii=False) + "\n")
                        docs += 1
    else:
        with atomic_file(output, "wb") as handle, pq.ParquetWriter(handle, SCHEMA, compression=COMPRESSION) as writer:
            for shard in list_shards(home.dataset_dir(name)):
                table = pq.read_table(shard, schema=SCHEMA)
                writer.write_table(table)
                docs += table.num_rows
    return {"dataset": name, "format": fmt, "path": str(output.resolve()), "docs": docs}
