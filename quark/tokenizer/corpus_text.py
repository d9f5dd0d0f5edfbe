"""The text of a dataset, as the tokenizer stages read it: `data/<dataset>/**/*.parquet`, text column.

Shards are listed in sorted path order and read in record batches, so memory stays flat however
large the corpus. Every shard is checked before any work starts (readable Parquet, a string `text`
column) so a bad shard fails in one line up front, not in a worker halfway through. A document's
held-out membership is a function of its text alone, so every stage and every rebuild agrees on it.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from quark.errors import QuarkError
from quark.home import Home

TEXT_COLUMN = "text"


@dataclass(frozen=True)
class Shard:
    """One Parquet file of a dataset, with what provenance records need about it."""

    dataset: str
    path: Path
    rows: int
    text_bytes: int  # uncompressed size of the text column: a cheap estimate of its characters

    def sha256(self) -> str:
        digest = hashlib.sha256()
        with open(self.path, "rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
        return digest.hexdigest()

    def texts(self, batch_size: int = 1024) -> Iterator[str]:
        """The shard's non-null texts in row order, one record batch in memory at a time."""
        try:
            with pq.ParquetFile(self.path) as parquet:
                for batch in parquet.iter_batches(batch_size=batch_size, columns=[TEXT_COLUMN]):
                    yield from (text for text in batch.column(0).to_pylist() if text is not None)
        except (OSError, pa.ArrowException) as exc:
            raise QuarkError(f"cannot read {self.path}: {exc}") from None


def dataset_shards(home: Home, names: Sequence[str]) -> list[Shard]:
    """Every Parquet shard of the named datasets (in the order given, each sorted by path), checked."""
    if not names:
        raise QuarkError("no dataset given (use --data DATASET)")
    if len(set(names)) != len(names):
        raise QuarkError(f"dataset listed twice in {', '.join(names)}")
    shards: list[Shard] = []
    for name in names:
        folder = home.existing(home.dataset_dir(name), "dataset")
        paths = sorted(p for p in folder.rglob("*.parquet") if p.is_file())
        if not paths:
            raise QuarkError(f"dataset {name!r} has no Parquet shards under {folder}")
        shards += [_open_shard(name, path) for path in paths]
    return shards


def _open_shard(dataset: str, path: Path) -> Shard:
    try:
        with pq.ParquetFile(path) as parquet:
            schema, meta = parquet.schema_arrow, parquet.metadata
    except (OSError, pa.ArrowException) as exc:
        raise QuarkError(f"{path}: not a readable Parquet file ({exc})") from None
    index = schema.get_field_index(TEXT_COLUMN)
    if index < 0:
        raise QuarkError(f"{path}: no {TEXT_COLUMN!r} column (columns: {', '.join(schema.names) or 'none'})")
    kind = schema.field(index).type
    if not (pa.types.is_string(kind) or pa.types.is_large_string(kind)):
        raise QuarkError(f"{path}: column {TEXT_COLUMN!r} has type {kind}, expected string")
    leaf = next(i for i in range(meta.num_columns) if meta.schema.column(i).path == TEXT_COLUMN)
    text_bytes = sum(meta.row_group(g).column(leaf).total_uncompressed_size for g in range(meta.num_row_groups))
    return Shard(dataset=dataset, path=path, rows=meta.num_rows, text_bytes=text_bytes)


def in_holdout(text: str, fraction: float) -> bool:
    """Whether a document belongs to the held-out split: the top 64 bits of its sha256 below
    `fraction` of the range. Deterministic, independent of order and workers, and duplicates of a
    document always land on the same side, so held-out text never leaks into training."""
    if fraction <= 0:
        return False
    digest = hashlib.sha256(text.encode("utf-8", "surrogatepass")).digest()
    return int.from_bytes(digest[:8], "big") < fraction * 2**64


def provenance(shards: Sequence[Shard], root: Path) -> list[dict]:
    """Per dataset, its shards with rows and sha256: enough to tell later whether the input changed."""
    out: dict[str, dict] = {}
    for shard in shards:
        entry = out.setdefault(shard.dataset, {"name": shard.dataset, "shards": []})
        entry["shards"].append({"file": str(shard.path.relative_to(root)), "rows": shard.rows,
                                "sha256": shard.sha256()})
    return list(out.values())
