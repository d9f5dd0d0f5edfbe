"""Document indexes in quark.db: sources, their chunks, BM25 over FTS5 and cosine over sqlite-vec.

    index = DocumentIndex(home)
    index.add("docs", [Path("src"), Path("README.md")], model="tiny-embed")
    index.search("docs", "how are checkpoints written?", k=5, reranker="tiny-rerank")

A source is a file (or a dataset document) and the sha256 of its text. `add` reads and hashes
every source, chunks the new and changed ones (quark.retrieval.chunking) and embeds their chunks
outside any transaction, then writes everything in one transaction: an unchanged source is left
alone, a changed one has its chunks replaced (only its own), a new one is inserted. A file that is
binary or not UTF-8 is named in the report and skipped; nothing else is touched for it.

Search is hybrid: the best `candidates` chunks by BM25 and by cosine, fused by reciprocal rank,
then, with a reranker, the fused top RERANK_POOL re-scored by it. The cosine side is sqlite-vec's
exact scan, or, once an index holds APPROX_FROM chunks, the usearch HNSW graph kept under
indexes/<name>/ (quark.retrieval.approximate), rebuilt after every change, recall-checked.
An index without an embedding model is BM25 only (and the reranker, when given).
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from quark.db import connect, transaction
from quark.errors import QuarkError
from quark.home import Home, validate_name
from quark.retrieval import approximate
from quark.retrieval.chunking import Chunk, chunk_text
from quark.retrieval.embedder import ModelEmbedder, embedder_name
from quark.retrieval.hybrid import fts_query, fuse

APPROX_FROM = 20_000  # chunks; below this the exact scan takes a few ms
RERANK_POOL = 20
SNIFF_BYTES = 8192
SKIP_DIRS = frozenset({".git", ".hg", ".svn", "__pycache__", ".venv", "venv", ".tox", "node_modules", ".mypy_cache",
                       ".pytest_cache", ".ruff_cache", ".ipynb_checkpoints", ".idea", ".vscode"})
_CHUNK_COLUMNS = "c.id, s.path, c.start_line, c.end_line, c.kind, c.title, c.text"


@dataclass(frozen=True)
class IndexInfo:
    id: int
    name: str
    model: str | None
    embedder: str | None
    dim: int | None
    generation: int
    created_at: float
    updated_at: float


@dataclass(frozen=True)
class ChunkRow:
    id: int
    path: str
    start_line: int
    end_line: int
    kind: str
    title: str
    text: str

    @property
    def ref(self) -> str:
        """How a chunk is shown with its source: 'path:12-40'."""
        return f"{self.path}:{self.start_line}-{self.end_line}"

    def as_dict(self) -> dict:
        return {**asdict(self), "ref": self.ref}


@dataclass(frozen=True)
class SearchHit:
    chunk: ChunkRow
    score: float  # the fused reciprocal-rank score, or the reranker's score when it ranked
    text_rank: int | None
    vector_rank: int | None
    rerank_score: float | None = None

    def as_dict(self) -> dict:
        return {**self.chunk.as_dict(), "score": self.score, "text_rank": self.text_rank,
                "vector_rank": self.vector_rank, "rerank_score": self.rerank_score}


@dataclass(frozen=True)
class Document:
    path: str  # the source's key: a resolved file path, or a dataset document's source
    text: str

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.text.encode("utf-8")).hexdigest()


@dataclass
class _Prepared:
    document: Document
    chunks: list[Chunk]
    vectors: np.ndarray | None
    replaces: int | None  # the source id it replaces


@dataclass
class AddReport:
    index: str
    added: list[str] = field(default_factory=list)
    replaced: list[str] = field(default_factory=list)
    unchanged: int = 0
    skipped: list[dict] = field(default_factory=list)  # {"path", "reason"}
    chunks_written: int = 0
    chunks_removed: int = 0
    reembedded: int = 0
    approximate: dict | None = None
    seconds: float = 0.0

    def as_dict(self) -> dict:
        return asdict(self)


def read_document(path: Path) -> Document | str:
    """The file as a Document, or why it is skipped ('binary', 'not UTF-8 …', 'unreadable …')."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        return f"unreadable ({exc.strerror or exc})"
    if b"\x00" in data[:SNIFF_BYTES]:
        return "binary (NUL bytes)"
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        return f"not UTF-8 (invalid byte at offset {exc.start}): corrupt or binary"
    return Document(str(path.resolve()), text)


def walk(paths: Sequence[Path]) -> Iterator[Path]:
    """Files under `paths` (folders walked in name order, version-control and cache folders left out)."""
    for path in paths:
        path = Path(path).expanduser()
        if path.is_dir():
            for child in sorted(path.rglob("*")):
                if child.is_file() and not any(part in SKIP_DIRS for part in child.relative_to(path).parts[:-1]):
                    yield child
        elif path.is_file():
            yield path
        else:
            raise QuarkError(f"no such file or folder: {path}")


def dataset_documents(home: Home, dataset: str) -> Iterator[Document]:
    """Every document of a dataset under data/ (its Parquet shards), keyed by its recorded source."""
    import pyarrow.parquet as pq

    from quark.data.shards import list_shards

    folder = home.existing(home.dataset_dir(dataset), "dataset")
    shards = list_shards(folder)
    if not shards:
        raise QuarkError(f"dataset {dataset!r} has no shards under {folder}")
    seen: dict[str, int] = {}
    for shard in shards:
        try:
            table = pq.read_table(shard, columns=["id", "text", "source"])
        except Exception as exc:  # pyarrow raises several types for a damaged file
            raise QuarkError(f"{shard}: not a readable dataset shard ({exc})") from None
        for doc_id, text, source in zip(*(table.column(c).to_pylist() for c in ("id", "text", "source"))):
            key = source or f"{dataset}:{doc_id}"
            seen[key] = seen.get(key, 0) + 1
            yield Document(key if seen[key] == 1 else f"{key}#{seen[key]}", text or "")


class DocumentIndex:
    """The document indexes of a home (one connection; embedders and rerankers loaded once)."""

    def __init__(self, home: Home, conn=None) -> None:
        self.home = home
        self.conn = conn or connect(home.db_path)
        self._embedders: dict[str, ModelEmbedder] = {}
        self._rerankers: dict[str, object] = {}
        self._approx: dict[str, approximate.ApproximateIndex | None] = {}
        self._vec_dims: set[int] = set()

    def close(self) -> None:
        self.conn.close()

    # ---- reading -----------------------------------------------------------------------------
    def info(self, name: str) -> IndexInfo:
        row = self.conn.execute("SELECT id, name, model, embedder, dim, generation, created_at, updated_at "
                                "FROM doc_indexes WHERE name = ?", (validate_name(name, "index name"),)).fetchone()
        if row is None:
            known = [r[0] for r in self.conn.execute("SELECT name FROM doc_indexes ORDER BY name")]
            raise QuarkError(f"no index {name!r} "
                             f"(indexes: {', '.join(known) or 'none yet; quark index add NAME PATH'})")
        return IndexInfo(*row)

    def listing(self) -> list[dict]:
        rows = self.conn.execute(
            "SELECT i.name, i.model, i.dim, (SELECT count(*) FROM doc_sources s WHERE s.index_id = i.id), "
            "(SELECT count(*) FROM doc_chunks c WHERE c.index_id = i.id), i.updated_at FROM doc_indexes i "
            "ORDER BY i.name")
        return [{"name": r[0], "model": r[1], "dim": r[2], "sources": r[3], "chunks": r[4], "updated_at": r[5]}
                for r in rows]

    def stats(self, name: str) -> dict:
        info = self.info(name)
        sources, size = self.conn.execute("SELECT count(*), coalesce(sum(bytes), 0) FROM doc_sources "
                                          "WHERE index_id = ?", (info.id,)).fetchone()
        chunks, chars = self.conn.execute("SELECT count(*), coalesce(sum(length(text)), 0) FROM doc_chunks "
                                          "WHERE index_id = ?", (info.id,)).fetchone()
        kinds = dict(self.conn.execute("SELECT kind, count(*) FROM doc_chunks WHERE index_id = ? GROUP BY kind",
                                       (info.id,)).fetchall())
        approx = approximate.ApproximateIndex.load(self.home.index_dir(name), generation=info.generation,
                                                   embedder=info.embedder or "") if info.embedder else None
        built = approximate.read_record(self.home.index_dir(name))
        return {"name": info.name, "model": info.model, "embedder": info.embedder, "dim": info.dim,
                "sources": sources, "bytes": size, "chunks": chunks, "chunk_chars": chars, "kinds": kinds,
                "generation": info.generation,
                "vector_search": "approximate" if approx else ("exact" if info.embedder else "none (BM25 only)"),
                "approximate": approx.record if approx else None,
                "approximate_built": built if built and not approx else None}

    def sources(self, name: str) -> list[dict]:
        info = self.info(name)
        rows = self.conn.execute("SELECT s.path, s.sha256, s.bytes, (SELECT count(*) FROM doc_chunks c WHERE "
                                 "c.source_id = s.id) FROM doc_sources s WHERE s.index_id = ? ORDER BY s.path",
                                 (info.id,))
        return [{"path": r[0], "sha256": r[1], "bytes": r[2], "chunks": r[3]} for r in rows]

    def chunks(self, name: str, *, source: str | None = None) -> list[ChunkRow]:
        info = self.info(name)
        sql = f"SELECT {_CHUNK_COLUMNS} FROM doc_chunks c JOIN doc_sources s ON s.id = c.source_id WHERE c.index_id = ?"
        args: list = [info.id]
        if source is not None:
            sql += " AND s.path = ?"
            args.append(source)
        return [ChunkRow(*r) for r in self.conn.execute(sql + " ORDER BY s.path, c.ordinal", args)]

    def get_chunks(self, ids: Iterable[int]) -> list[ChunkRow]:
        ids = list(dict.fromkeys(ids))
        if not ids:
            return []
        rows = self.conn.execute(f"SELECT {_CHUNK_COLUMNS} FROM doc_chunks c JOIN doc_sources s ON s.id = c.source_id "
                                 f"WHERE c.id IN ({','.join('?' * len(ids))})", ids).fetchall()
        found = {r[0]: ChunkRow(*r) for r in rows}
        return [found[i] for i in ids if i in found]

    # ---- writing -----------------------------------------------------------------------------
    def add(self, name: str, paths: Sequence[Path] = (), *, dataset: str | None = None, model: str | None = None,
            on_progress: Callable[[int, int], None] | None = None) -> AddReport:
        """Add files and folders (or a dataset's documents) to index `name`, creating it if needed."""
        started = time.perf_counter()
        validate_name(name, "index name")
        report = AddReport(name)
        existing = self._maybe_info(name)
        model = model or (existing.model if existing else None)
        space = embedder_name(self.home.existing(self.home.model_dir(model), "model")) if model else None
        documents: list[Document] = []
        for path in walk(paths):
            read = read_document(path)
            if isinstance(read, str):
                report.skipped.append({"path": str(path), "reason": read})
            else:
                documents.append(read)
        if dataset:
            documents += list(dataset_documents(self.home, dataset))
        if report.skipped and not documents and not model:  # everything named was unreadable: say so, change nothing
            first = report.skipped[0]
            more = f" (and {len(report.skipped) - 1} more)" if len(report.skipped) > 1 else ""
            raise QuarkError(f"nothing to index: {first['path']}: {first['reason']}{more}")
        if len({d.path for d in documents}) != len(documents):
            documents = list({d.path: d for d in documents}.values())
        known = {} if existing is None else dict(self.conn.execute(
            "SELECT path, id || ':' || sha256 FROM doc_sources WHERE index_id = ?", (existing.id,)).fetchall())
        prepared: list[_Prepared] = []
        for number, document in enumerate(documents, 1):
            previous = known.get(document.path)
            if previous is not None and previous.split(":", 1)[1] == document.sha256:
                report.unchanged += 1
            else:
                chunks = chunk_text(document.path, document.text)
                vectors = self._embedder(model).embed([_embedded_text(c) for c in chunks]) if model and chunks else None
                replaces = int(previous.split(":", 1)[0]) if previous else None
                prepared.append(_Prepared(document, chunks, vectors, replaces))
            if on_progress:
                on_progress(number, len(documents))
        reembed = existing is not None and space is not None and existing.embedder != space
        embedder = self._embedder(model) if prepared and model or reembed else None
        old_chunks = self.chunks(name) if reembed else []
        old_vectors = embedder.embed([_embedded_text(c) for c in old_chunks]) if reembed and old_chunks else None
        with transaction(self.conn):
            index_id = existing.id if existing else self._create(
                name, model, embedder or (self._embedder(model) if model else None))
            if reembed:
                self._drop_vectors(index_id, existing.dim)
                self.conn.execute("UPDATE doc_indexes SET model = ?, embedder = ?, dim = ? WHERE id = ?",
                                  (model, embedder.name, embedder.dim, index_id))
                replaced_ids = {p.replaces for p in prepared if p.replaces is not None}
                keep = [i for i, c in enumerate(old_chunks) if self._source_of(c.id) not in replaced_ids]
                if keep:
                    self._write_vectors(index_id, [old_chunks[i].id for i in keep], old_vectors[keep])
                report.reembedded = len(keep)
            for item in prepared:
                if item.replaces is not None:
                    report.chunks_removed += self._delete_source(item.replaces)
                    report.replaced.append(item.document.path)
                else:
                    report.added.append(item.document.path)
                report.chunks_written += self._insert(index_id, item)
            if prepared or reembed:
                self._bump(index_id)
        report.approximate = self._refresh_approximate(name)
        report.seconds = time.perf_counter() - started
        return report

    def remove(self, name: str, *, source: str | None = None) -> dict:
        """Remove one source (its chunks and vectors go with it), or the whole index."""
        info = self.info(name)
        with transaction(self.conn):
            if source is None:
                self._drop_vectors(info.id, info.dim)
                chunks = self.conn.execute("SELECT count(*) FROM doc_chunks WHERE index_id = ?",
                                           (info.id,)).fetchone()[0]
                self.conn.execute("DELETE FROM doc_chunks WHERE index_id = ?", (info.id,))
                self.conn.execute("DELETE FROM doc_indexes WHERE id = ?", (info.id,))
                removed = {"index": name, "removed": "index", "chunks_removed": chunks}
            else:
                key = _source_key(source)
                row = self.conn.execute("SELECT id, path FROM doc_sources WHERE index_id = ? AND path IN (?, ?)",
                                        (info.id, source, key)).fetchone()
                if row is None:
                    raise QuarkError(f"index {name!r} has no source {source!r} "
                                     f"(see quark index stats {name} --sources)")
                removed = {"index": name, "removed": row[1], "chunks_removed": self._delete_source(row[0])}
                self._bump(info.id)
        if source is None:
            approximate.remove(self.home.index_dir(name))
        else:
            removed["approximate"] = self._refresh_approximate(name)
        return removed

    def _maybe_info(self, name: str) -> IndexInfo | None:
        try:
            return self.info(name)
        except QuarkError:
            return None

    def _create(self, name: str, model: str | None, embedder: ModelEmbedder | None) -> int:
        now = time.time()
        cursor = self.conn.execute(
            "INSERT INTO doc_indexes(name, model, embedder, dim, created_at, updated_at) VALUES (?,?,?,?,?,?)",
            (name, model, embedder.name if embedder else None, embedder.dim if embedder else None, now, now))
        return cursor.lastrowid

    def _bump(self, index_id: int) -> None:
        self.conn.execute("UPDATE doc_indexes SET generation = generation + 1, updated_at = ? WHERE id = ?",
                          (time.time(), index_id))

    def _insert(self, index_id: int, item: _Prepared) -> int:
        doc = item.document
        source_id = self.conn.execute(
            "INSERT INTO doc_sources(index_id, path, sha256, bytes, added_at) VALUES (?,?,?,?,?)",
            (index_id, doc.path, doc.sha256, len(doc.text.encode("utf-8")), time.time())).lastrowid
        ids = []
        for ordinal, chunk in enumerate(item.chunks):
            ids.append(self.conn.execute(
                "INSERT INTO doc_chunks(source_id, index_id, ordinal, start_line, end_line, kind, title, text, sha256) "
                "VALUES (?,?,?,?,?,?,?,?,?)",
                (source_id, index_id, ordinal, chunk.start_line, chunk.end_line, chunk.kind, chunk.title, chunk.text,
                 hashlib.sha256(chunk.text.encode()).hexdigest())).lastrowid)
        if item.vectors is not None and ids:
            self._write_vectors(index_id, ids, item.vectors)
        return len(ids)

    def _source_of(self, chunk_id: int) -> int:
        return self.conn.execute("SELECT source_id FROM doc_chunks WHERE id = ?", (chunk_id,)).fetchone()[0]

    def _delete_source(self, source_id: int) -> int:
        count = self.conn.execute("SELECT count(*) FROM doc_chunks WHERE source_id = ?", (source_id,)).fetchone()[0]
        self.conn.execute("DELETE FROM doc_sources WHERE id = ?", (source_id,))  # chunks cascade, vectors by trigger
        return count

    # ---- vectors -----------------------------------------------------------------------------
    def _vec_table(self, dim: int) -> str:
        table = f"doc_vec_{int(dim)}"
        if dim not in self._vec_dims:
            self.conn.execute(f"CREATE VIRTUAL TABLE IF NOT EXISTS {table} USING vec0("
                              f"embedding float[{int(dim)}] distance_metric=cosine, index_id integer partition key)")
            self.conn.execute(f"CREATE TRIGGER IF NOT EXISTS {table}_gc AFTER DELETE ON doc_chunks "
                              f"BEGIN DELETE FROM {table} WHERE rowid = old.id; END")
            self._vec_dims.add(dim)
        return table

    def _write_vectors(self, index_id: int, ids: Sequence[int], vectors: np.ndarray) -> None:
        table = self._vec_table(vectors.shape[1])
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        self.conn.executemany(f"INSERT INTO {table}(rowid, embedding, index_id) VALUES (?,?,?)",
                              [(int(i), v.tobytes(), index_id) for i, v in zip(ids, vectors)])

    def _drop_vectors(self, index_id: int, dim: int | None) -> None:
        if dim and self._has_table(f"doc_vec_{int(dim)}"):
            self.conn.execute(f"DELETE FROM doc_vec_{int(dim)} WHERE index_id = ?", (index_id,))

    def _has_table(self, table: str) -> bool:
        return self.conn.execute("SELECT 1 FROM sqlite_master WHERE name = ?", (table,)).fetchone() is not None

    def vectors(self, info: IndexInfo) -> tuple[np.ndarray, np.ndarray]:
        """(chunk ids, vectors) of every embedded chunk of an index."""
        if not info.dim or not self._has_table(f"doc_vec_{int(info.dim)}"):
            return np.zeros(0, dtype=np.uint64), np.zeros((0, info.dim or 0), dtype=np.float32)
        rows = self.conn.execute(f"SELECT rowid, embedding FROM doc_vec_{int(info.dim)} WHERE index_id = ?",
                                 (info.id,)).fetchall()
        ids = np.array([r[0] for r in rows], dtype=np.uint64)
        vectors = np.frombuffer(b"".join(r[1] for r in rows), dtype=np.float32).reshape(len(rows), info.dim)
        return ids, vectors

    def _refresh_approximate(self, name: str) -> dict | None:
        """Rebuild the approximate index of a large index (drop it from a small one)."""
        info = self.info(name)
        folder = self.home.index_dir(name)
        self._approx.pop(name, None)
        count = self.conn.execute("SELECT count(*) FROM doc_chunks WHERE index_id = ?", (info.id,)).fetchone()[0]
        if not info.embedder or count < APPROX_FROM:
            approximate.remove(folder)
            return None
        ids, vectors = self.vectors(info)
        return approximate.ApproximateIndex.build(folder, ids, vectors, generation=info.generation,
                                                  embedder=info.embedder).record

    # ---- search ------------------------------------------------------------------------------
    def search(self, name: str, query: str, *, k: int = 5, reranker: str | None = None, candidates: int = 50,
               exact: bool = False) -> list[SearchHit]:
        """Hybrid search (see the module docstring), best first."""
        if not query.strip():
            raise QuarkError("the search query is empty")
        if k < 1:
            raise QuarkError(f"k must be at least 1, got {k}")
        info = self.info(name)
        text_ids = self._text_candidates(info, query, candidates)
        vector_ids = self._vector_candidates(info, query, candidates, exact=exact)
        ranked = fuse(text_ids, vector_ids)  # the reciprocal-rank fusion memory's search uses too
        fused = {r.id: r for r in ranked}
        pool = self.get_chunks([r.id for r in ranked[:max(k, RERANK_POOL) if reranker else k]])
        if not reranker:
            return [SearchHit(c, fused[c.id].score, fused[c.id].text_rank, fused[c.id].vector_rank) for c in pool]
        judge = self._reranker(reranker)
        rerank_scores = judge.scores(query, [_embedded_text(c) for c in pool])
        order = sorted(range(len(pool)), key=lambda i: -rerank_scores[i])[:k]
        return [SearchHit(pool[i], rerank_scores[i], fused[pool[i].id].text_rank, fused[pool[i].id].vector_rank,
                          rerank_scores[i]) for i in order]

    def _text_candidates(self, info: IndexInfo, query: str, limit: int) -> list[int]:
        match = fts_query(query)
        if not match:
            return []
        rows = self.conn.execute("SELECT f.rowid FROM doc_chunks_fts f JOIN doc_chunks c ON c.id = f.rowid "
                                 "WHERE doc_chunks_fts MATCH ? AND c.index_id = ? ORDER BY f.rank LIMIT ?",
                                 (match, info.id, limit)).fetchall()
        return [r[0] for r in rows]

    def _vector_candidates(self, info: IndexInfo, query: str, limit: int, *, exact: bool) -> list[int]:
        if not info.embedder or not info.model:
            return []
        embedder = self._embedder(info.model)
        if embedder.name != info.embedder:
            raise QuarkError(f"index {info.name!r} was embedded with an earlier version of model {info.model!r}; "
                             f"re-embed it with: quark index add {info.name}")
        vector = embedder.embed([query])[0]
        if not exact:
            if info.name not in self._approx:
                self._approx[info.name] = approximate.ApproximateIndex.load(
                    self.home.index_dir(info.name), generation=info.generation, embedder=info.embedder)
            approx = self._approx[info.name]
            if approx is not None:
                return approx.search(vector, limit)
        if not self._has_table(f"doc_vec_{int(info.dim)}"):
            return []
        rows = self.conn.execute(f"SELECT rowid FROM doc_vec_{int(info.dim)} WHERE embedding MATCH ? AND k = ? "
                                 "AND index_id = ? ORDER BY distance", (vector.tobytes(), limit, info.id)).fetchall()
        return [r[0] for r in rows]

    def _embedder(self, model: str) -> ModelEmbedder:
        if model not in self._embedders:
            self._embedders[model] = ModelEmbedder.load(self.home.existing(self.home.model_dir(model), "model"))
        return self._embedders[model]

    def _reranker(self, name: str):
        if name not in self._rerankers:
            from quark.retrieval.reranker import Reranker

            self._rerankers[name] = Reranker.load(self.home.existing(self.home.model_dir(name), "reranker"))
        return self._rerankers[name]


def _embedded_text(chunk: Chunk | ChunkRow) -> str:
    """What is embedded and reranked: the chunk's text (its title is in the text already)."""
    return chunk.text


def _source_key(source: str) -> str:
    path = Path(source).expanduser()
    return str(path.resolve()) if path.exists() else source
