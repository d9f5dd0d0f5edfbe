"""Long-term memories in quark.db: rows, their FTS5 index and their sqlite-vec embeddings.

`memories` is the source of truth; triggers keep `memories_fts` (BM25) in step, and each
embedding lives in `memory_vec_<dim>` (a vec0 table, cosine distance, partitioned by embedder so
a query only meets vectors from its own space). The vec0 table for a dimension is created the
first time an embedder of that dimension writes, with a trigger that deletes its rows when their
`memory_embeddings` entry goes (which cascades from the memory, which cascades from its
conversation). Write methods expect the caller's transaction (quark.db.transaction) so a turn's
message, memories and vectors commit together.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass

import numpy as np

from quark.errors import QuarkError
from quark.memory.extract import NewMemory
from quark.memory.text import content_words

RRF_K = 60  # reciprocal-rank-fusion constant (Cormack et al.): score = sum 1 / (RRF_K + rank)
# Full-text queries keep their MAX_TERMS rarest words and, once there are PRUNE_FROM memories, drop
# words found in more than COMMON_FRACTION of them: BM25 gives such words almost no weight, and
# scoring their long posting lists is what makes a query slow.
MAX_TERMS, COMMON_FRACTION, PRUNE_FROM = 8, 0.05, 1000
_COLUMNS = "id, kind, tag, text, source_message_id, conversation_id, created_at"


@dataclass(frozen=True)
class Memory:
    id: int
    kind: str
    tag: str | None
    text: str
    source_message_id: int | None
    conversation_id: int | None
    created_at: float

    @property
    def ref(self) -> str:
        """How the memory is cited in prompts and named by /forget: 'm12'."""
        return f"m{self.id}"

    def as_dict(self) -> dict:
        return {"ref": self.ref, **asdict(self)}


@dataclass(frozen=True)
class Hit:
    memory: Memory
    score: float  # fused reciprocal-rank score
    text_rank: int | None  # 1-based BM25 rank, None when full-text search did not find it
    vector_rank: int | None  # 1-based cosine rank, None when not among the vector candidates


def parse_ref(ref: str | int) -> int:
    """'m12', '12' or 12 → 12; anything else is a user error."""
    match = re.fullmatch(r"\s*m?(\d+)\s*", str(ref))
    if not match:
        raise QuarkError(f"invalid memory id {ref!r}: expected a number such as m12")
    return int(match.group(1))


def query_words(text: str) -> list[str]:
    """The distinct content words of a query, as FTS5 will be given them."""
    return list(dict.fromkeys(w.replace('"', "") for w in content_words(text)))


def fts_query(words: str | list[str]) -> str:
    """An FTS5 OR-query of the words (or a text's content words), each quoted so no word is syntax."""
    terms = query_words(words) if isinstance(words, str) else words
    return " OR ".join(f'"{t}"' for t in terms[:32])


class MemoryStore:
    def __init__(self, conn) -> None:
        self.conn = conn
        self._vec_dims: set[int] = set()
        self._stemmer_ready = False

    # ---- writing (inside the caller's transaction) -------------------------------------------
    def add(self, items: Sequence[NewMemory], *, conversation_id: int | None, source_message_id: int | None,
            vectors: np.ndarray | None = None, embedder: str | None = None) -> list[Memory]:
        """Insert memories (and their vectors, row for row). A fact whose text is already known
        (any conversation, case-insensitively), or a pinned memory already pinned in this
        conversation, is not duplicated: the existing memory is returned in its place."""
        out: list[Memory] = []
        now = time.time()
        for row, item in enumerate(items):
            existing = self._duplicate(item, conversation_id)
            if existing is not None:
                out.append(existing)
                continue
            cursor = self.conn.execute(
                "INSERT INTO memories(kind, tag, text, source_message_id, conversation_id, created_at) "
                "VALUES (?,?,?,?,?,?)", (item.kind, item.tag, item.text, source_message_id, conversation_id, now))
            memory = Memory(cursor.lastrowid, item.kind, item.tag, item.text, source_message_id, conversation_id, now)
            if vectors is not None and embedder is not None:
                self.attach_vectors([memory.id], vectors[row:row + 1], embedder)
            out.append(memory)
        return out

    def attach_vectors(self, memory_ids: Sequence[int], vectors: np.ndarray, embedder: str) -> None:
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        dim = int(vectors.shape[1])
        table = self._vec_table(dim)
        for memory_id, vector in zip(memory_ids, vectors):
            cursor = self.conn.execute(
                "INSERT INTO memory_embeddings(memory_id, embedder, dim) VALUES (?,?,?) "
                "ON CONFLICT(memory_id, embedder) DO NOTHING", (memory_id, embedder, dim))
            if cursor.rowcount:
                self.conn.execute(f"INSERT INTO {table}(rowid, embedding, embedder) VALUES (?,?,?)",
                                  (cursor.lastrowid, vector.tobytes(), embedder))

    def forget(self, memory_id: int) -> Memory:
        """Delete one memory; its FTS entry and vectors go with it (triggers, cascade)."""
        memory = self.get(memory_id)
        self.conn.execute("DELETE FROM memories WHERE id = ?", (memory_id,))
        return memory

    def of_message(self, message_id: int, *, kind: str | None = None) -> list[Memory]:
        """The memories learnt from one message (of one kind)."""
        rows = self.conn.execute(f"SELECT {_COLUMNS} FROM memories WHERE source_message_id = ? "
                                 "AND (? IS NULL OR kind = ?) ORDER BY id", (message_id, kind, kind)).fetchall()
        return [Memory(*row) for row in rows]

    def _duplicate(self, item: NewMemory, conversation_id: int | None) -> Memory | None:
        if item.kind == "fact":
            row = self.conn.execute(f"SELECT {_COLUMNS} FROM memories WHERE kind = 'fact' AND text = ? COLLATE NOCASE "
                                    "LIMIT 1", (item.text,)).fetchone()
        elif item.kind == "pinned":
            row = self.conn.execute(f"SELECT {_COLUMNS} FROM memories WHERE kind = 'pinned' AND text = ? "
                                    "AND conversation_id IS ? LIMIT 1", (item.text, conversation_id)).fetchone()
        else:
            return None
        return Memory(*row) if row else None

    def _vec_table(self, dim: int) -> str:
        table = f"memory_vec_{int(dim)}"
        if dim not in self._vec_dims:
            self.conn.execute(f"CREATE VIRTUAL TABLE IF NOT EXISTS {table} USING vec0("
                              f"embedding float[{int(dim)}] distance_metric=cosine, embedder text partition key)")
            self.conn.execute(f"CREATE TRIGGER IF NOT EXISTS {table}_gc AFTER DELETE ON memory_embeddings "
                              f"WHEN old.dim = {int(dim)} BEGIN DELETE FROM {table} WHERE rowid = old.id; END")
            self._vec_dims.add(dim)
        return table

    def _has_vec_table(self, dim: int) -> bool:
        if dim in self._vec_dims:
            return True
        found = self.conn.execute("SELECT 1 FROM sqlite_master WHERE name = ?", (f"memory_vec_{int(dim)}",)).fetchone()
        return found is not None

    # ---- reading -----------------------------------------------------------------------------
    def get(self, memory_id: int) -> Memory:
        row = self.conn.execute(f"SELECT {_COLUMNS} FROM memories WHERE id = ?", (memory_id,)).fetchone()
        if row is None:
            raise QuarkError(f"no memory m{memory_id}")
        return Memory(*row)

    def get_many(self, ids: Iterable[int]) -> list[Memory]:
        """Memories in the order of `ids`; ids that no longer exist are skipped."""
        ids = list(dict.fromkeys(ids))
        if not ids:
            return []
        rows = self.conn.execute(f"SELECT {_COLUMNS} FROM memories WHERE id IN ({','.join('?' * len(ids))})",
                                 ids).fetchall()
        by_id = {row[0]: Memory(*row) for row in rows}
        return [by_id[i] for i in ids if i in by_id]

    def list(self, *, conversation_id: int | None = None, kinds: Sequence[str] = ("fact", "chunk", "pinned"),
             limit: int = 200) -> list[Memory]:
        """Newest first, optionally of one conversation."""
        sql = f"SELECT {_COLUMNS} FROM memories WHERE kind IN ({','.join('?' * len(kinds))})"
        args: list = list(kinds)
        if conversation_id is not None:
            sql += " AND conversation_id = ?"
            args.append(conversation_id)
        rows = self.conn.execute(sql + " ORDER BY id DESC LIMIT ?", [*args, limit]).fetchall()
        return [Memory(*row) for row in rows]

    def pinned(self, conversation_id: int | None) -> list[Memory]:
        """Pinned memories of a conversation plus those pinned for every conversation (NULL)."""
        rows = self.conn.execute(f"SELECT {_COLUMNS} FROM memories WHERE kind = 'pinned' "
                                 "AND (conversation_id IS ? OR conversation_id IS NULL) ORDER BY id",
                                 (conversation_id,)).fetchall()
        return [Memory(*row) for row in rows]

    def count(self) -> int:
        return self.conn.execute("SELECT count(*) FROM memories").fetchone()[0]

    def missing_vectors(self, embedder: str, limit: int) -> list[Memory]:
        """Memories this embedder has not embedded yet (written under another model), oldest first."""
        rows = self.conn.execute(
            f"SELECT {_COLUMNS} FROM memories m WHERE NOT EXISTS (SELECT 1 FROM memory_embeddings e "
            "WHERE e.memory_id = m.id AND e.embedder = ?) ORDER BY id LIMIT ?", (embedder, limit)).fetchall()
        return [Memory(*row) for row in rows]

    def search(self, query: str, query_vector: np.ndarray | None = None, embedder: str | None = None, *,
               k: int = 6, candidates: int = 50, kinds: Sequence[str] = ("fact", "chunk"),
               exclude_sources: Iterable[int] = ()) -> list[Hit]:
        """Hybrid search: BM25 over FTS5 and cosine over sqlite-vec, fused by reciprocal rank.

        Each side contributes its top `candidates`; a memory's score is the sum of 1/(60 + rank)
        over the sides that found it. Memories whose source message is in `exclude_sources` (the
        turns already in the prompt) are skipped."""
        text_ids = self._text_candidates(query, candidates)
        vector_ids = self._vector_candidates(query_vector, embedder, candidates)
        scores: dict[int, float] = {}
        for ranked in (text_ids, vector_ids):
            for rank, memory_id in enumerate(ranked, start=1):
                scores[memory_id] = scores.get(memory_id, 0.0) + 1.0 / (RRF_K + rank)
        text_rank = {m: r for r, m in enumerate(text_ids, start=1)}
        vector_rank = {m: r for r, m in enumerate(vector_ids, start=1)}
        excluded = set(exclude_sources)
        hits: list[Hit] = []
        for memory in self.get_many(sorted(scores, key=lambda m: (-scores[m], m))):
            if memory.kind not in kinds or memory.source_message_id in excluded:
                continue
            hits.append(Hit(memory, scores[memory.id], text_rank.get(memory.id), vector_rank.get(memory.id)))
            if len(hits) == k:
                break
        return hits

    def _text_candidates(self, query: str, limit: int) -> list[int]:
        words = self._selective(query_words(query))
        if not words:
            return []
        rows = self.conn.execute("SELECT rowid FROM memories_fts WHERE memories_fts MATCH ? ORDER BY rank LIMIT ?",
                                 (fts_query(words), limit)).fetchall()
        return [row[0] for row in rows]

    def _selective(self, words: list[str]) -> list[str]:
        """The rarest words of a query (see MAX_TERMS, COMMON_FRACTION), in query order.

        Document frequencies come from the fts5vocab table, which holds *stemmed* terms; each
        word is stemmed by the same tokenizer through a one-row-per-word TEMP FTS5 table."""
        if len(words) <= 1:
            return words
        total = self.conn.execute("SELECT max(id) FROM memories").fetchone()[0] or 0
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
        df = dict(self.conn.execute(f"SELECT term, doc FROM memories_fts_vocab WHERE term IN ({marks})",
                                    list(stems.values())).fetchall())
        frequency = {i: df.get(stems.get(i), 0) for i in range(len(words))}
        ranked = sorted(range(len(words)), key=lambda i: frequency[i])
        keep = [i for i in ranked if total < PRUNE_FROM or frequency[i] <= COMMON_FRACTION * total][:MAX_TERMS]
        return [words[i] for i in sorted(keep or ranked[:1])]

    def _vector_candidates(self, vector: np.ndarray | None, embedder: str | None, limit: int) -> list[int]:
        if vector is None or embedder is None:
            return []
        vector = np.ascontiguousarray(vector, dtype=np.float32).reshape(-1)
        if not self._has_vec_table(vector.shape[0]):
            return []
        rows = self.conn.execute(
            f"SELECT e.memory_id FROM (SELECT rowid, distance FROM memory_vec_{int(vector.shape[0])} "
            "WHERE embedding MATCH ? AND k = ? AND embedder = ?) v JOIN memory_embeddings e ON e.id = v.rowid "
            "ORDER BY v.distance", (vector.tobytes(), limit, embedder)).fetchall()
        return [row[0] for row in rows]
