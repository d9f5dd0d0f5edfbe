"""corpus.duckdb: the catalog of datasets under data/, one row per document, plus why documents
were dropped. Parquet shards hold the text; the catalog answers stats/mix/remove questions without
reading it.

Every change goes through `publish`: datasets are built in temporary folders, the catalog rows are
written in one transaction, the folders are renamed into place, and only then is the transaction
committed. A failure anywhere before the renames leaves both the folders and the catalog as they
were. The catalog is opened only for that last step, so a long ingest does not hold DuckDB's lock.
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import duckdb

from quark.atomic import atomic_dir
from quark.data.shards import list_shards
from quark.errors import QuarkError
from quark.home import Home

LOCK_WAIT_S = 60.0
_SCHEMA = """
CREATE TABLE IF NOT EXISTS datasets (
    name VARCHAR NOT NULL, kind VARCHAR NOT NULL,          -- ingest | blend | dedup | filter
    docs BIGINT NOT NULL, chars BIGINT NOT NULL, shards INTEGER NOT NULL,
    sources VARCHAR NOT NULL,                               -- JSON list: what it was built from
    created_at DOUBLE NOT NULL);
CREATE TABLE IF NOT EXISTS documents (
    dataset VARCHAR NOT NULL, shard VARCHAR NOT NULL, row_number BIGINT NOT NULL,
    id VARCHAR, source VARCHAR, license VARCHAR, language VARCHAR,
    code_blocks INTEGER, chars BIGINT, sha256 VARCHAR);
CREATE TABLE IF NOT EXISTS drops (dataset VARCHAR NOT NULL, reason VARCHAR NOT NULL, docs BIGINT NOT NULL);
CREATE TABLE IF NOT EXISTS removals (pattern VARCHAR NOT NULL, dataset VARCHAR NOT NULL, docs BIGINT NOT NULL,
                                     removed_at DOUBLE NOT NULL);
"""


@dataclass
class DatasetRecord:
    """What `publish` writes to the catalog for one dataset built in a temporary folder."""

    name: str
    kind: str
    sources: list[str]
    drops: dict[str, int] | None = None        # replaces the dataset's drop counts; None keeps them
    removal: tuple[str, int] | None = None     # (pattern, documents) for the takedown log
    rebuilt: bool = False                      # a takedown rebuild keeps its place in creation order
    extra: dict[str, Any] = field(default_factory=dict)  # reported back to the caller, not stored


@contextlib.contextmanager
def reader(home: Home) -> Iterator[duckdb.DuckDBPyConnection | None]:
    """A read-only connection, or None when no dataset was ever ingested (nothing is created)."""
    if not home.corpus_db_path.exists():
        yield None
        return
    con = _connect(home, read_only=True)
    try:
        catalogued = con.execute("SELECT count(*) FROM information_schema.tables WHERE table_name = "
                                 "'datasets'").fetchone()
        yield con if catalogued[0] else None
    finally:
        con.close()


def _connect(home: Home, read_only: bool = False) -> duckdb.DuckDBPyConnection:
    """Open the catalog, waiting a while for another quark process that holds DuckDB's file lock
    (writers hold it only for the few seconds of a publish)."""
    deadline = time.monotonic() + LOCK_WAIT_S
    while True:
        try:
            con = duckdb.connect(str(home.corpus_db_path), read_only=read_only)
            break
        except duckdb.IOException as error:
            if time.monotonic() > deadline:
                raise QuarkError(f"{home.corpus_db_path} is in use by another quark process; try again when it is "
                                 f"done ({str(error).splitlines()[0]})") from error
            time.sleep(0.2)
    con.execute("SET python_enable_replacements = false")  # table names must never resolve to Python objects
    if not read_only:
        con.execute(_SCHEMA)
    return con


def datasets(home: Home) -> list[dict[str, Any]]:
    """Every catalogued dataset, oldest first."""
    with reader(home) as con:
        if con is None:
            return []
        rows = con.execute("SELECT name, kind, docs, chars, shards, sources, created_at FROM datasets "
                           "ORDER BY created_at, name").fetchall()
    return [{"name": n, "kind": k, "docs": d, "chars": c, "shards": s, "sources": json.loads(src), "created_at": t}
            for n, k, d, c, s, src, t in rows]


def require(home: Home, name: str) -> dict[str, Any]:
    """The catalog entry of dataset `name`, or a QuarkError listing the known ones."""
    folder = home.dataset_dir(name)  # validates the name first: no path tricks reach the catalog
    known = {entry["name"]: entry for entry in datasets(home)}
    if name not in known or not folder.is_dir():
        listing = ", ".join(sorted(known)) or "none yet; run quark data ingest"
        raise QuarkError(f"unknown dataset {name!r} (known: {listing})")
    return known[name]


def drops(home: Home, name: str) -> dict[str, int]:
    with reader(home) as con:
        if con is None:
            return {}
        rows = con.execute("SELECT reason, docs FROM drops WHERE dataset = ? ORDER BY docs DESC, reason",
                           [name]).fetchall()
    return dict(rows)


def counts(home: Home, name: str, column: str, top: int | None = None) -> dict[str, int]:
    """Documents of `name` grouped by a catalog column (language, license, ...)."""
    if column not in ("language", "license", "source"):
        raise ValueError(column)
    limit = f"LIMIT {int(top)}" if top else ""
    with reader(home) as con:
        if con is None:
            return {}
        rows = con.execute(f"SELECT {column}, count(*) AS n FROM documents WHERE dataset = ? "
                           f"GROUP BY {column} ORDER BY n DESC, {column} {limit}", [name]).fetchall()
    return dict(rows)


def language_totals(home: Home, name: str) -> dict[str, dict[str, int]]:
    """Documents and characters of `name` per language, largest first: the dataset's language buckets."""
    with reader(home) as con:
        if con is None:
            return {}
        rows = con.execute("SELECT language, count(*), coalesce(sum(chars), 0) AS c FROM documents WHERE dataset = ? "
                           "GROUP BY language ORDER BY c DESC, language", [name]).fetchall()
    return {language: {"docs": int(docs), "chars": int(chars)} for language, docs, chars in rows}


def code_block_totals(home: Home, name: str) -> tuple[int, int]:
    """(fenced code blocks in all documents, documents with at least one)."""
    with reader(home) as con:
        if con is None:
            return 0, 0
        total, with_blocks = con.execute("SELECT coalesce(sum(code_blocks), 0), count(*) FILTER (code_blocks > 0) "
                                         "FROM documents WHERE dataset = ?", [name]).fetchone()
    return int(total), int(with_blocks)


def publish(home: Home, names: list[str], build: Callable[[dict[str, Path]],
                                                          list[DatasetRecord]]) -> list[DatasetRecord]:
    """Build `names` in temporary folders with `build`, then swap them in and catalog them together."""
    con = None
    data_root = home.dataset_dir(names[0]).parent
    fresh_data_root = not data_root.exists()
    try:
        with contextlib.ExitStack() as stack:
            folders = {name: stack.enter_context(atomic_dir(home.dataset_dir(name))) for name in names}
            records = build(folders)
            con = _connect(home)
            con.begin()
            for record in records:
                _register(con, record, folders[record.name])
        con.commit()  # the folders are in place: make the catalog say so
    except BaseException:
        if con is not None:
            with contextlib.suppress(duckdb.Error):
                con.rollback()
        if fresh_data_root:
            with contextlib.suppress(OSError):
                data_root.rmdir()  # only if empty: a failed first ingest leaves the home as it was
        raise
    finally:
        if con is not None:
            con.close()
    return records


def _register(con: duckdb.DuckDBPyConnection, record: DatasetRecord, folder: Path) -> None:
    con.execute("DELETE FROM documents WHERE dataset = ?", [record.name])
    shards = list_shards(folder)
    for shard in shards:
        con.execute(
            "INSERT INTO documents SELECT ?, ?, file_row_number, id, source, license, language, code_blocks, chars, "
            "sha256 FROM read_parquet(?, file_row_number = true)", [record.name, shard.name, str(shard)])
    docs, chars = con.execute("SELECT count(*), coalesce(sum(chars), 0) FROM documents WHERE dataset = ?",
                              [record.name]).fetchone()
    created = con.execute("SELECT min(created_at) FROM datasets WHERE name = ?", [record.name]).fetchone()[0]
    con.execute("DELETE FROM datasets WHERE name = ?", [record.name])
    # Takedowns rebuild blends in creation order (inputs before the blends made from them), so a
    # rebuild keeps its creation time; anything the user builds anew is newer than its inputs.
    con.execute("INSERT INTO datasets VALUES (?, ?, ?, ?, ?, ?, ?)",
                [record.name, record.kind, docs, chars, len(shards), json.dumps(record.sources),
                 created if record.rebuilt and created is not None else time.time()])
    if record.drops is not None:
        con.execute("DELETE FROM drops WHERE dataset = ?", [record.name])
        for reason, count in sorted(record.drops.items()):
            con.execute("INSERT INTO drops VALUES (?, ?, ?)", [record.name, reason, int(count)])
    if record.removal is not None:
        con.execute("INSERT INTO removals VALUES (?, ?, ?, ?)", [record.removal[0], record.name, record.removal[1],
                                                                 time.time()])


def summary(home: Home, record: DatasetRecord) -> dict[str, Any]:
    """What a command that built `record` reports: counts, shards, drops by reason, languages, licences."""
    entry = require(home, record.name)
    return {
        "dataset": record.name,
        "docs": entry["docs"],
        "chars": entry["chars"],
        "shards": [str(path.relative_to(home.root)) for path in list_shards(home.dataset_dir(record.name))],
        "dropped": dict(sorted((record.drops or {}).items(), key=lambda kv: (-kv[1], kv[0]))),
        "scrubbed": record.extra.get("scrubbed", {}),
        "languages": counts(home, record.name, "language", top=10),
        "licenses": counts(home, record.name, "license", top=10),
        "path": str(home.dataset_dir(record.name)),
    }
