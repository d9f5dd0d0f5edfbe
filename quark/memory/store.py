"""Long-term memories in quark.db: rows, their FTS5 index and their sqlite-vec embeddings.

`memories` is the source of truth; triggers keep `memories_fts` (BM25) in step, and each
embedding lives in `memory_vec_<dim>` (a vec0 table, cosine distance, partitioned by embedder so
a query only meets vectors from its own space). Search and vector writes are
quark.retrieval.hybrid over these tables; a `memory_embeddings` entry cascades from the memory,
which cascades from its conversation. Write methods expect the caller's transaction (quark.db.transaction) so a turn's
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
from quark.retrieval.hybrid import HybridIndex, HybridTables

TABLES = HybridTables(items="memories", fts="memories_fts", fts_vocab="memories_fts_vocab",
                      embeddings="memory_embeddings", item_column="memory_id", vec_prefix="memory_vec_")
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


class MemoryStore:
    def __init__(self, conn) -> None:
        self.conn = conn
        self.index = HybridIndex(conn, TABLES)

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
        self.index.add_vectors(memory_ids, vectors, embedder)

    def forget(self, memory_id: int) -> Memory:
        """Delete one memory; its FTS entry and vectors go with it (triggers, cascade)."""
        memory = self.get(memory_id)
        self.conn.execute("DELETE FROM memories WHERE id = ?", (memory_id,))
        return memory

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
        ranked = {r.id: r for r in self.index.search(query, query_vector, embedder, candidates=candidates)}
        excluded = set(exclude_sources)
        hits: list[Hit] = []
        for memory in self.get_many(ranked):
            if memory.kind not in kinds or memory.source_message_id in excluded:
                continue
            r = ranked[memory.id]
            hits.append(Hit(memory, r.score, r.text_rank, r.vector_rank))
            if len(hits) == k:
                break
        return hits
