"""Hybrid search over SQLite: BM25 through FTS5 and cosine through sqlite-vec, fused by reciprocal rank.

A corpus that wants hybrid search keeps, next to its own rows (`HybridTables` names them):

- an FTS5 table whose rowid is the item id, and an `fts5vocab(<fts>, 'row')` table over it (the
  document frequencies used to drop common query words);
- an embeddings table `(id INTEGER PRIMARY KEY, <item column>, embedder, dim)`, one row per item
  and embedder, and one vec0 table per dimension, `<vec prefix><dim>`, whose rowid is that id.
  The vec0 table is created on first write, with a trigger that deletes its rows when their
  embeddings row goes.

Memory (quark.memory.store) is one such corpus; the document index is another.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from quark.text import content_words

RRF_K = 60  # reciprocal-rank-fusion constant (Cormack et al.): score = sum 1 / (RRF_K + rank)
# Full-text queries keep their MAX_TERMS rarest words and, once there are PRUNE_FROM items, drop
# words found in more than COMMON_FRACTION of them: BM25 gives such words almost no weight, and
# scoring their long posting lists is what makes a query slow.
MAX_TERMS, COMMON_FRACTION, PRUNE_FROM = 8, 0.05, 1000


def query_words(text: str) -> list[str]:
    """The distinct content words of a query, as FTS5 will be given them."""
    return list(dict.fromkeys(w.replace('"', "") for w in content_words(text)))


def fts_query(words: str | list[str]) -> str:
    """An FTS5 OR-query of the words (or a text's content words), each quoted so no word is syntax."""
    terms = query_words(words) if isinstance(words, str) else words
    return " OR ".join(f'"{t}"' for t in terms[:32])


@dataclass(frozen=True)
class HybridTables:
    """The tables one corpus keeps for hybrid search (see the module docstring)."""

    items: str  # the rows themselves: max(id) estimates how many there are
    fts: str
    fts_vocab: str
    embeddings: str
    item_column: str  # the column of `embeddings` holding the item id
    vec_prefix: str  # vec0 table per dimension: f"{vec_prefix}{dim}"

    def vec_table(self, dim: int) -> str:
        return f"{self.vec_prefix}{int(dim)}"


@dataclass(frozen=True)
class Ranked:
    """One item of a fused ranking."""

    id: int
    score: float  # fused reciprocal-rank score
    text_rank: int | None  # 1-based BM25 rank, None when full-text search did not find it
    vector_rank: int | None  # 1-based cosine rank, None when not among the vector candidates


def fuse(text_ids: Sequence[int], vector_ids: Sequence[int]) -> list[Ranked]:
    """Reciprocal-rank fusion: an item scores the sum of 1/(RRF_K + rank) over the rankings that
    found it; best first, ties by id."""
    scores: dict[int, float] = {}
    for ranked in (text_ids, vector_ids):
        for rank, item in enumerate(ranked, start=1):
            scores[item] = scores.get(item, 0.0) + 1.0 / (RRF_K + rank)
    text_rank = {m: r for r, m in enumerate(text_ids, start=1)}
    vector_rank = {m: r for r, m in enumerate(vector_ids, start=1)}
    return [Ranked(i, scores[i], text_rank.get(i), vector_rank.get(i))
            for i in sorted(scores, key=lambda i: (-scores[i], i))]


class HybridIndex:
    """Hybrid search and vector writes over one corpus's tables, on one connection."""

    def __init__(self, conn, tables: HybridTables) -> None:
        self.conn, self.tables = conn, tables
        self._vec_dims: set[int] = set()
        self._stemmer_ready = False

    # ---- writing (inside the caller's transaction) -------------------------------------------
    def add_vectors(self, item_ids: Sequence[int], vectors: np.ndarray, embedder: str) -> None:
        """Store each item's vector under `embedder`; an item it already embedded keeps its vector."""
        t = self.tables
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        dim = int(vectors.shape[1])
        table = self._vec_table(dim)
        for item_id, vector in zip(item_ids, vectors):
            cursor = self.conn.execute(
                f"INSERT INTO {t.embeddings}({t.item_column}, embedder, dim) VALUES (?,?,?) "
                f"ON CONFLICT({t.item_column}, embedder) DO NOTHING", (item_id, embedder, dim))
            if cursor.rowcount:
                self.conn.execute(f"INSERT INTO {table}(rowid, embedding, embedder) VALUES (?,?,?)",
                                  (cursor.lastrowid, vector.tobytes(), embedder))

    def _vec_table(self, dim: int) -> str:
        table = self.tables.vec_table(dim)
        if dim not in self._vec_dims:
            self.conn.execute(f"CREATE VIRTUAL TABLE IF NOT EXISTS {table} USING vec0("
                              f"embedding float[{int(dim)}] distance_metric=cosine, embedder text partition key)")
            self.conn.execute(f"CREATE TRIGGER IF NOT EXISTS {table}_gc AFTER DELETE ON {self.tables.embeddings} "
                              f"WHEN old.dim = {int(dim)} BEGIN DELETE FROM {table} WHERE rowid = old.id; END")
            self._vec_dims.add(dim)
        return table

    def _has_vec_table(self, dim: int) -> bool:
        if dim in self._vec_dims:
            return True
        found = self.conn.execute("SELECT 1 FROM sqlite_master WHERE name = ?",
                                  (self.tables.vec_table(dim),)).fetchone()
        return found is not None

    # ---- searching ---------------------------------------------------------------------------
    def search(self, query: str, query_vector: np.ndarray | None = None, embedder: str | None = None, *,
               candidates: int = 50) -> list[Ranked]:
        """Each side's top `candidates` (BM25 on the query's words, cosine on `query_vector` within
        `embedder`'s space), fused by reciprocal rank."""
        return fuse(self.text_candidates(query, candidates), self.vector_candidates(query_vector, embedder, candidates))

    def text_candidates(self, query: str, limit: int) -> list[int]:
        words = self._selective(query_words(query))
        if not words:
            return []
        t = self.tables
        rows = self.conn.execute(f"SELECT rowid FROM {t.fts} WHERE {t.fts} MATCH ? ORDER BY rank LIMIT ?",
                                 (fts_query(words), limit)).fetchall()
        return [row[0] for row in rows]

    def _selective(self, words: list[str]) -> list[str]:
        """The rarest words of a query (see MAX_TERMS, COMMON_FRACTION), in query order.

        Document frequencies come from the fts5vocab table, which holds *stemmed* terms; each
        word is stemmed by the same tokenizer through a one-row-per-word TEMP FTS5 table."""
        if len(words) <= 1:
            return words
        total = self.conn.execute(f"SELECT max(id) FROM {self.tables.items}").fetchone()[0] or 0
        if total < PRUNE_FROM and len(words) <= MAX_TERMS:
            return words
        if not self._stemmer_ready:
            self.conn.execute("CREATE VIRTUAL TABLE IF NOT EXISTS temp.query_words USING fts5("
                              "w, tokenize='porter unicode61')")
            self.conn.execute("CREATE VIRTUAL TABLE IF NOT EXISTS temp.query_words_vocab USING "
                              "fts5vocab(temp, query_words, 'instance')")
            self._stemmer_ready = True
        self.conn.execute("DELETE FROM temp.query_words")
        self.conn.executemany("INSERT INTO temp.query_words(rowid, w) VALUES (?, ?)", enumerate(words))
        stems = dict(self.conn.execute("SELECT doc, term FROM temp.query_words_vocab").fetchall())
        marks = ",".join("?" * len(stems))
        df = dict(self.conn.execute(f"SELECT term, doc FROM {self.tables.fts_vocab} WHERE term IN ({marks})",
                                    list(stems.values())).fetchall())
        frequency = {i: df.get(stems.get(i), 0) for i in range(len(words))}
        ranked = sorted(range(len(words)), key=lambda i: frequency[i])
        keep = [i for i in ranked if total < PRUNE_FROM or frequency[i] <= COMMON_FRACTION * total][:MAX_TERMS]
        return [words[i] for i in sorted(keep or ranked[:1])]

    def vector_candidates(self, vector: np.ndarray | None, embedder: str | None, limit: int) -> list[int]:
        if vector is None or embedder is None:
            return []
        vector = np.ascontiguousarray(vector, dtype=np.float32).reshape(-1)
        if not self._has_vec_table(vector.shape[0]):
            return []
        t = self.tables
        rows = self.conn.execute(
            f"SELECT e.{t.item_column} FROM (SELECT rowid, distance FROM {t.vec_table(vector.shape[0])} "
            f"WHERE embedding MATCH ? AND k = ? AND embedder = ?) v JOIN {t.embeddings} e ON e.id = v.rowid "
            "ORDER BY v.distance", (vector.tobytes(), limit, embedder)).fetchall()
        return [row[0] for row in rows]
