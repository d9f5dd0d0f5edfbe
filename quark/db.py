"""quark.db: the home's SQLite database (WAL), with sqlite-vec loaded on every connection.

The standard library's sqlite3 often cannot load extensions (pyenv and macOS builds), so we connect
through sqlean.py, which bundles a SQLite that can. The schema grows by appending to MIGRATIONS;
`PRAGMA user_version` records how many have run.
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import sqlean as sqlite3
import sqlite_vec

# Each entry runs once, in order, inside a transaction. Never edit a released entry: append.
MIGRATIONS: list[str] = [
    # 1: runs, eval results, API keys, tool-call audit log
    """
    CREATE TABLE runs (
        name        TEXT PRIMARY KEY,
        kind        TEXT NOT NULL,            -- pretrain | sft | dpo | reward | image ...
        model       TEXT,                     -- model folder the run publishes to
        status      TEXT NOT NULL,            -- running | finished | failed | interrupted
        config      TEXT NOT NULL,            -- JSON of the resolved recipe
        summary     TEXT NOT NULL DEFAULT '{}',
        started_at  REAL NOT NULL,
        updated_at  REAL NOT NULL
    );
    CREATE TABLE eval_results (
        id          INTEGER PRIMARY KEY,
        model       TEXT NOT NULL,
        run         TEXT,
        task        TEXT NOT NULL,            -- perplexity | humaneval | mbpp | docqa ...
        metrics     TEXT NOT NULL,            -- JSON
        created_at  REAL NOT NULL
    );
    CREATE INDEX eval_results_model ON eval_results(model, task);
    CREATE TABLE api_keys (
        id          INTEGER PRIMARY KEY,
        name        TEXT NOT NULL UNIQUE,
        key_hash    TEXT NOT NULL UNIQUE,
        rate_limit  INTEGER,                  -- requests per minute, NULL for none
        created_at  REAL NOT NULL,
        revoked_at  REAL
    );
    CREATE TABLE tool_calls (
        id          INTEGER PRIMARY KEY,
        conversation_id INTEGER,
        tool        TEXT NOT NULL,
        arguments   TEXT NOT NULL,
        result      TEXT,
        ok          INTEGER NOT NULL,
        created_at  REAL NOT NULL
    );
    """,
    # 2: chat store, long-term memory and conversation snapshots. A conversation's messages form a tree
    # (parent_id); `tip_id` picks the branch the next message continues, so setting it back to an
    # earlier message forks there. Deleting a conversation deletes what was learnt from it.
    # Embeddings live in one vec0 table per dimension, `memory_vec_<dim>`, created on first use
    # (quark.retrieval.hybrid); `memory_embeddings` maps their rowids to memories and embedders.
    """
    CREATE TABLE conversations (
        id                 INTEGER PRIMARY KEY,
        title              TEXT NOT NULL,
        model              TEXT,
        system_prompt      TEXT NOT NULL DEFAULT '',
        summary            TEXT NOT NULL DEFAULT '',  -- one extractive line per folded message
        summarized_through INTEGER REFERENCES messages(id) ON DELETE SET NULL,
        tip_id             INTEGER REFERENCES messages(id) ON DELETE SET NULL,
        restored           TEXT,                      -- JSON carried into the next prompt by a checkpoint load
        created_at         REAL NOT NULL,
        updated_at         REAL NOT NULL
    );
    CREATE TABLE messages (
        id              INTEGER PRIMARY KEY,
        conversation_id INTEGER NOT NULL REFERENCES conversations(id) ON DELETE CASCADE,
        parent_id       INTEGER REFERENCES messages(id) ON DELETE CASCADE,
        role            TEXT NOT NULL CHECK (role IN ('system', 'user', 'assistant', 'tool')),
        content         TEXT NOT NULL,
        reply_to        INTEGER,                      -- the user message an assistant message answers
        meta            TEXT NOT NULL DEFAULT '{}',   -- JSON: model, finish reason, memories in its prompt
        created_at      REAL NOT NULL
    );
    CREATE INDEX messages_conversation ON messages(conversation_id, id);
    CREATE INDEX messages_parent ON messages(parent_id);
    CREATE TABLE memories (
        id                INTEGER PRIMARY KEY,
        kind              TEXT NOT NULL CHECK (kind IN ('fact', 'chunk', 'pinned')),
        tag               TEXT,                       -- facts: name | preference | decision | file | code | note
        text              TEXT NOT NULL,
        source_message_id INTEGER REFERENCES messages(id) ON DELETE SET NULL,
        conversation_id   INTEGER REFERENCES conversations(id) ON DELETE CASCADE,
        created_at        REAL NOT NULL
    );
    CREATE INDEX memories_kind_text ON memories(kind, text COLLATE NOCASE);
    CREATE INDEX memories_conversation ON memories(conversation_id, kind);
    CREATE VIRTUAL TABLE memories_fts USING fts5(text, content='memories', content_rowid='id',
                                                 tokenize='porter unicode61');
    CREATE TRIGGER memories_fts_insert AFTER INSERT ON memories BEGIN
        INSERT INTO memories_fts(rowid, text) VALUES (new.id, new.text);
    END;
    CREATE TRIGGER memories_fts_delete AFTER DELETE ON memories BEGIN
        INSERT INTO memories_fts(memories_fts, rowid, text) VALUES ('delete', old.id, old.text);
    END;
    -- document frequencies, for pruning common words from queries
    CREATE VIRTUAL TABLE memories_fts_vocab USING fts5vocab(memories_fts, 'row');
    CREATE TRIGGER memories_fts_update AFTER UPDATE OF text ON memories BEGIN
        INSERT INTO memories_fts(memories_fts, rowid, text) VALUES ('delete', old.id, old.text);
        INSERT INTO memories_fts(rowid, text) VALUES (new.id, new.text);
    END;
    CREATE TABLE memory_embeddings (
        id        INTEGER PRIMARY KEY,                -- the rowid in memory_vec_<dim>
        memory_id INTEGER NOT NULL REFERENCES memories(id) ON DELETE CASCADE,
        embedder  TEXT NOT NULL,
        dim       INTEGER NOT NULL,
        UNIQUE (memory_id, embedder)
    );
    CREATE INDEX memory_embeddings_embedder ON memory_embeddings(embedder, memory_id);
    CREATE TABLE checkpoints (
        id              INTEGER PRIMARY KEY,
        name            TEXT NOT NULL UNIQUE,
        conversation_id INTEGER REFERENCES conversations(id) ON DELETE SET NULL,
        snapshot        TEXT NOT NULL,                -- JSON, quark.chat.snapshot.Snapshot
        created_at      REAL NOT NULL
    );
    CREATE TABLE preferences (
        key        TEXT PRIMARY KEY,
        value      TEXT NOT NULL,                     -- JSON
        updated_at REAL NOT NULL
    );
    """,
    # 3: tools (quark.tools). The audit log gains what a call's outcome was and how long it took,
    # and a digest of its result (a replay is compared by digest); `kind` tells tool calls from
    # checkpoint saves/restores. `fetch_cache` keeps fetched pages for ETag/Last-Modified
    # revalidation (quark.tools.web.cache).
    """
    ALTER TABLE tool_calls ADD COLUMN kind TEXT NOT NULL DEFAULT 'tool';
    ALTER TABLE tool_calls ADD COLUMN outcome TEXT;
    ALTER TABLE tool_calls ADD COLUMN error TEXT;
    ALTER TABLE tool_calls ADD COLUMN result_digest TEXT;
    ALTER TABLE tool_calls ADD COLUMN duration_s REAL;
    UPDATE tool_calls SET outcome = CASE WHEN ok THEN 'ok' ELSE 'error' END;
    CREATE INDEX tool_calls_conversation ON tool_calls(conversation_id, id);
    CREATE TABLE fetch_cache (
        url           TEXT PRIMARY KEY,              -- the URL as requested
        final_url     TEXT NOT NULL,                 -- after redirects
        content_type  TEXT NOT NULL,
        charset       TEXT NOT NULL,
        etag          TEXT,
        last_modified TEXT,
        body          BLOB NOT NULL,
        fetched_at    REAL NOT NULL,
        validated_at  REAL NOT NULL
    );
    """,
    # 4: generated assets (SPEC §3 `assets/`): meshes and images, each with what made it. `path` is
    # where the file was written (under assets/ unless the user chose another place); `params`
    # holds the rest as JSON (meshes: the scene program, face budget, format, checks, adapter,
    # preview path; images: steps, size, guidance, ...).
    """
    CREATE TABLE assets (
        id              INTEGER PRIMARY KEY,
        kind            TEXT NOT NULL CHECK (kind IN ('mesh', 'image')),
        path            TEXT NOT NULL,
        sha256          TEXT NOT NULL,            -- of the file's bytes as written
        prompt          TEXT,                     -- NULL for a hand-written program
        negative_prompt TEXT,
        seed            INTEGER,
        model           TEXT,                     -- the model folder that generated it, NULL if none
        params          TEXT NOT NULL DEFAULT '{}',
        created_at      REAL NOT NULL
    );
    CREATE INDEX assets_kind ON assets(kind, created_at);
    """,
    # 5: document indexes for grounded answers (quark.retrieval.documents). A source is one file (or
    # dataset document) with the sha256 of its content, so re-adding it unchanged is a no-op and
    # re-adding it changed replaces its chunks only. Chunk ids never repeat (AUTOINCREMENT): they
    # are the keys of the approximate index kept beside quark.db. Vectors live in one vec0 table per
    # dimension, `doc_vec_<dim>` (partitioned by index), created on first use with a trigger that
    # deletes a chunk's vector with the chunk.
    """
    CREATE TABLE doc_indexes (
        id          INTEGER PRIMARY KEY,
        name        TEXT NOT NULL UNIQUE,
        model       TEXT,                     -- the embedding model (models/<model>), NULL: BM25 only
        embedder    TEXT,                     -- the vector space its chunks were embedded in
        dim         INTEGER,
        generation  INTEGER NOT NULL DEFAULT 0,  -- bumped on every change; the ANN file records it
        created_at  REAL NOT NULL,
        updated_at  REAL NOT NULL
    );
    CREATE TABLE doc_sources (
        id          INTEGER PRIMARY KEY,
        index_id    INTEGER NOT NULL REFERENCES doc_indexes(id) ON DELETE CASCADE,
        path        TEXT NOT NULL,
        sha256      TEXT NOT NULL,
        bytes       INTEGER NOT NULL,
        added_at    REAL NOT NULL,
        UNIQUE (index_id, path)
    );
    CREATE TABLE doc_chunks (
        id          INTEGER PRIMARY KEY AUTOINCREMENT,
        source_id   INTEGER NOT NULL REFERENCES doc_sources(id) ON DELETE CASCADE,
        index_id    INTEGER NOT NULL,
        ordinal     INTEGER NOT NULL,
        start_line  INTEGER NOT NULL,
        end_line    INTEGER NOT NULL,
        kind        TEXT NOT NULL,
        title       TEXT NOT NULL DEFAULT '',
        text        TEXT NOT NULL,
        sha256      TEXT NOT NULL
    );
    CREATE INDEX doc_chunks_source ON doc_chunks(source_id, ordinal);
    CREATE INDEX doc_chunks_index ON doc_chunks(index_id);
    CREATE VIRTUAL TABLE doc_chunks_fts USING fts5(title, text, content='doc_chunks', content_rowid='id',
                                                   tokenize='porter unicode61');
    CREATE TRIGGER doc_chunks_fts_insert AFTER INSERT ON doc_chunks BEGIN
        INSERT INTO doc_chunks_fts(rowid, title, text) VALUES (new.id, new.title, new.text);
    END;
    CREATE TRIGGER doc_chunks_fts_delete AFTER DELETE ON doc_chunks BEGIN
        INSERT INTO doc_chunks_fts(doc_chunks_fts, rowid, title, text) VALUES ('delete', old.id, old.title, old.text);
    END;
    """,
    # 6: serve auth that stays on once keys existed (`quark serve keys auth on|off`) and per-key
    # tokens-per-minute limits.
    """
    CREATE TABLE serve_settings (
        key        TEXT PRIMARY KEY,                  -- auth: 'on' | 'off' (set by the user)
        value      TEXT NOT NULL,
        updated_at REAL NOT NULL
    );
    -- generated tokens per minute, NULL for none
    ALTER TABLE api_keys ADD COLUMN token_limit INTEGER;
    """,
    # 7: per-conversation chat settings and feedback on replies (quark.chat.settings, quark.chat.feedback).
    # Settings are a JSON object on the conversation row: a handful of optional overrides (temperature,
    # top_p, max_tokens, ...) that are always read and written with the conversation and never queried by
    # value, so a column keeps them with the row (deleted with it, no join) and a new setting needs no
    # migration. Feedback is one row per rated reply: +1/-1 (0: cleared) and `best`, the mark "better
    # than its siblings" set after regenerating; both become DPO preference pairs.
    """
    ALTER TABLE conversations ADD COLUMN settings TEXT NOT NULL DEFAULT '{}';
    CREATE TABLE feedback (
        message_id INTEGER PRIMARY KEY REFERENCES messages(id) ON DELETE CASCADE,
        rating     INTEGER NOT NULL DEFAULT 0 CHECK (rating IN (-1, 0, 1)),
        best       INTEGER NOT NULL DEFAULT 0 CHECK (best IN (0, 1)),
        updated_at REAL NOT NULL
    );
    """,
]


def connect(path: Path | str) -> sqlite3.Connection:
    """Open quark.db: WAL, a busy timeout so concurrent writers wait rather than fail, sqlite-vec."""
    conn = sqlite3.connect(str(path), timeout=30.0, isolation_level=None, check_same_thread=False)
    conn.row_factory = sqlite3.Row
    conn.enable_load_extension(True)
    sqlite_vec.load(conn)
    conn.enable_load_extension(False)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA busy_timeout=30000")
    conn.execute("PRAGMA foreign_keys=ON")
    conn.execute("PRAGMA synchronous=NORMAL")
    migrate(conn)
    return conn


def migrate(conn: sqlite3.Connection) -> None:
    """Run the migrations not yet applied. BEGIN IMMEDIATE serialises racing processes."""
    if conn.execute("PRAGMA user_version").fetchone()[0] >= len(MIGRATIONS):
        return
    with transaction(conn):
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        for index in range(version, len(MIGRATIONS)):
            for statement in _statements(MIGRATIONS[index]):
                conn.execute(statement)
            conn.execute(f"PRAGMA user_version = {index + 1}")


def _statements(script: str) -> list[str]:
    """Split a migration into statements (executescript would commit our transaction)."""
    statements, current = [], []
    for line in script.splitlines():
        current.append(line)
        candidate = "\n".join(current).strip()
        if candidate.endswith(";") and sqlite3.complete_statement(candidate):
            statements.append(candidate)
            current = []
    tail = "\n".join(current).strip()
    if tail:
        statements.append(tail)
    return statements


@contextlib.contextmanager
def transaction(conn: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    """BEGIN IMMEDIATE … COMMIT, rolled back on any exception: no partial rows."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield conn
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")


def record_run(conn: sqlite3.Connection, name: str, kind: str, model: str | None, config: dict[str, Any],
               status: str = "running") -> None:
    now = time.time()
    with transaction(conn):
        conn.execute(
            "INSERT INTO runs(name, kind, model, status, config, started_at, updated_at) VALUES (?,?,?,?,?,?,?) "
            "ON CONFLICT(name) DO UPDATE SET status=excluded.status, config=excluded.config, "
            "updated_at=excluded.updated_at",
            (name, kind, model, status, json.dumps(config), now, now),
        )


@contextlib.contextmanager
def run_outcome(conn: sqlite3.Connection | None, name: str) -> Iterator[None]:
    """Mark run `name` failed (or interrupted, for Ctrl-C) if the block raises, so that `runs`
    never shows as running a run that died between its row and its first step, or while
    publishing. `conn` is None on processes other than rank 0."""
    try:
        yield
    except BaseException as exc:
        if conn is not None:
            status = "interrupted" if isinstance(exc, KeyboardInterrupt) else "failed"
            finish_run(conn, name, status, {"error": str(exc) or type(exc).__name__})
        raise


def finish_run(conn: sqlite3.Connection, name: str, status: str, summary: dict[str, Any]) -> None:
    with transaction(conn):
        conn.execute("UPDATE runs SET status=?, summary=?, updated_at=? WHERE name=?",
                     (status, json.dumps(summary), time.time(), name))
