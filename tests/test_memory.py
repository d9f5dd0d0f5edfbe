"""Long-term memory: fact rules, chunks, the store's FTS5/vec0 indexes kept in step, hybrid search,
the extractive summary, the profile — and recall of an early fact in a long conversation."""

from __future__ import annotations

import numpy as np
import pytest

from chat_fixtures import FAST, chat_home, session  # noqa: F401  (fixtures)
from quark.db import connect, transaction
from quark.errors import QuarkError
from quark.memory import MemoryStore, NewMemory, chunk_message, describe, extract_facts, summary_line, update_profile
from quark.memory.store import parse_ref


def test_rules_extract_names_preferences_decisions_files_and_identifiers() -> None:
    text = ("Hi! My name is Ada Lovelace. I really like sqlite and I hate YAML configs. "
            "We decided to use duckdb for the corpus. Let's use `TokenWriter` from quark/tokens.py, "
            "see https://example.com/x.py. Remember that the demo is on Friday. My name is not important.")
    facts = {(f.tag, f.text) for f in extract_facts(text)}
    assert ("name", "user's name is Ada Lovelace") in facts
    assert ("preference", "user likes sqlite") in facts  # the clause stops at "and I …"
    assert ("preference", "user hates YAML configs") in facts
    assert ("decision", "decision: use duckdb for the corpus") in facts
    assert ("file", "file referenced: quark/tokens.py") in facts
    assert ("code", "code referenced: `TokenWriter`") in facts
    assert ("note", "note: the demo is on Friday") in facts
    assert not any(tag == "file" and "example.com" in text for tag, text in facts)  # URLs are not files
    assert not any(text.startswith("user's name is Not") for _, text in facts)
    assert extract_facts("I don't like tabs")[0].text == "user does not like tabs"


def test_chunks_cover_the_message_within_the_limit() -> None:
    text = "\n\n".join(f"Paragraph {i}. " + "word " * (30 + i * 7) for i in range(12))
    chunks = chunk_message(text, limit=120)
    assert all(len(c) <= 120 for c in chunks)
    assert " ".join(chunks).split() == text.split()


def test_summary_line_is_the_first_sentence_with_code_noted_and_truncated() -> None:
    assert summary_line("user", "My name is Ada. I like SQLite.") == "- user: My name is Ada."
    line = summary_line("assistant", "```python\nprint(1)\nx = 2\n```\nThat is the fix. Run it.")
    assert line == "- assistant: That is the fix. [python block, 3 lines]"
    long = summary_line("user", "word " * 200)
    assert long.endswith("…") and len(long) <= len("- user: ") + 160


def test_profile_moves_with_the_user_and_renders_one_line() -> None:
    profile = None
    for text in ["hey lol, can you look at `parse()` in sqlite land!", "sqlite again, be brief",
                 "sqlite indexes and `vec0` please"]:
        profile = update_profile(profile, text)
    assert profile["verbosity"] == "concise" and profile["turns"] == 3
    assert profile["style"] == "code" and "sqlite" in profile["interests"]
    profile = update_profile(profile, "Could you please explain it in detail? Thank you.")
    assert profile["verbosity"] == "detailed"
    assert describe(profile).startswith("User profile: tone ") and "sqlite" in describe(profile)
    assert describe(None) == ""


@pytest.fixture
def store(tmp_path):
    conn = connect(tmp_path / "quark.db")
    yield MemoryStore(conn)
    conn.close()


def _unit(rng: np.random.Generator, n: int, dim: int) -> np.ndarray:
    v = rng.standard_normal((n, dim)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def test_fts_and_vectors_follow_inserts_deletes_and_cascades(store: MemoryStore) -> None:
    rng = np.random.default_rng(0)
    conn = store.conn
    with transaction(conn):
        conn.execute("INSERT INTO conversations(id, title, created_at, updated_at) VALUES (1, 't', 0, 0)")
        memories = store.add([NewMemory("fact", "user's name is Ada", "name"), NewMemory("chunk", "SQLite is fast")],
                             conversation_id=1, source_message_id=None, vectors=_unit(rng, 2, 8), embedder="e")
        again = store.add([NewMemory("fact", "USER'S NAME IS ADA", "name")], conversation_id=1,
                          source_message_id=None)
    assert again[0].id == memories[0].id  # facts are not duplicated
    assert [h.memory.id for h in store.search("what is my name")] == [memories[0].id]
    with transaction(conn):
        store.forget(memories[0].id)
    assert store.search("name") == []
    assert conn.execute("SELECT count(*) FROM memory_vec_8").fetchone()[0] == 1
    with transaction(conn):
        conn.execute("DELETE FROM conversations WHERE id = 1")  # cascades to memories, FTS, vectors
    assert store.count() == 0 and store.search("SQLite") == []
    assert conn.execute("SELECT count(*) FROM memory_vec_8").fetchone()[0] == 0
    with pytest.raises(QuarkError):
        store.forget(memories[1].id)


def test_hybrid_search_fuses_bm25_and_cosine_by_reciprocal_rank(store: MemoryStore) -> None:
    rng = np.random.default_rng(1)
    texts = ["the deploy script lives in ops", "sqlite stores the chat", "lunch is at noon",
             "vectors are compared by cosine", "the sqlite index is fts5"]
    vectors = _unit(rng, len(texts), 16)
    with transaction(store.conn):
        mems = store.add([NewMemory("chunk", t) for t in texts], conversation_id=None, source_message_id=None,
                         vectors=vectors, embedder="e")
    query_vector = vectors[2] + 0.05 * _unit(rng, 1, 16)[0]  # closest to "lunch is at noon"
    hits = store.search("sqlite", query_vector / np.linalg.norm(query_vector), "e", k=5)
    ids = [h.memory.id for h in hits]
    by_text = {h.memory.text: h for h in hits}
    assert by_text["lunch is at noon"].vector_rank == 1 and by_text["lunch is at noon"].text_rank is None
    assert {by_text["sqlite stores the chat"].text_rank, by_text["the sqlite index is fts5"].text_rank} == {1, 2}
    # A memory found by both searches outranks any found by one.
    both = [h for h in hits if h.text_rank and h.vector_rank]
    assert both and ids[0] == both[0].memory.id
    # Another embedder's space is never searched with this query.
    assert all(h.vector_rank is None for h in store.search("sqlite", query_vector, "other", k=5))
    assert [h.memory.id for h in store.search("sqlite", None, None, k=5)] == [m.id for m in mems if "sqlite" in m.text]


def test_full_text_queries_drop_words_most_memories_contain(store: MemoryStore) -> None:
    texts = [f"common filler number {i}" for i in range(1200)] + ["common words and one rare zebra"]
    with transaction(store.conn):
        store.conn.executemany("INSERT INTO memories(kind, text, created_at) VALUES ('chunk', ?, 0)",
                               [(t,) for t in texts])
    hits = store.search("common zebras", k=50)  # stemmed: "zebras" finds "zebra"
    assert [h.memory.text for h in hits] == ["common words and one rare zebra"]
    assert len(store.search("common", k=50)) == 50  # a query of common words alone still searches


def test_memory_refs_parse() -> None:
    assert parse_ref("m12") == 12 and parse_ref(" 7 ") == 7
    with pytest.raises(QuarkError, match="invalid memory id"):
        parse_ref("m1; DROP TABLE memories")


def test_an_early_fact_beyond_the_window_is_retrieved_when_asked_about(session) -> None:
    params = session.params(**FAST, seed=0)
    first = session.send("Hello! My name is Ada and I work on compilers.", params)
    folded: list[int] = []
    for i in range(14):
        result = session.send(f"Here is filler message {i} about weather, trains and gardening in spring.", params)
        folded += [s["message_id"] for s in result.prompt.summarized()]
    assert first.user_message_id in folded  # the first turn left the short-term window...
    result = session.send("Remind me, what is my name?", params)
    assert first.user_message_id not in [m.id for m in result.prompt.window]
    texts = [m.memory.text for m in result.prompt.memories]
    assert "user's name is Ada" in texts  # ...and memory brings the fact back, cited by id
    ada = next(m for m in result.prompt.memories if m.memory.text == "user's name is Ada")
    assert f"[{ada.memory.ref}] user's name is Ada" in result.prompt.system
    assert ada.memory.source_message_id == first.user_message_id and ada.source == "retrieved"
