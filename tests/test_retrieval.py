"""Quark's own retrieval: the contrastive embedding head, the reranker, the document index,
grounded chat with numbered sources, and /v1/embeddings from the embedding model."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import httpx
import numpy as np
import pytest

from conftest import Quark, make_tiny_model
from quark.home import Home
from quark.modelfolder import load_model, load_tokenizer
from quark.retrieval.chunking import chunk_text
from quark.retrieval.contrastive import retrieval_scores
from quark.retrieval.embedding import embed_texts, load_head
from quark.retrieval.grounding import citations
from quark.retrieval.pairs import Corruptor, read_text_pairs, strip_docstring, write_pairs

PY_A = '''"""Module a."""
import os


def alpha(x):
    """Return x doubled."""
    return 2 * x


def beta(y):
    return y + 1
'''
MD_B = "# Guide\n\nHow to install the frobnicator.\n\n## Usage\n\nRun `frob --fast`.\n"


@pytest.fixture(scope="module")
def embed_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A home with model `tiny` and `emb`, its contrastive fine-tune (a short run on the built-in pairs)."""
    home = tmp_path_factory.mktemp("embed-home")
    make_tiny_model(home)
    Quark(home)("finetune", "embed", "--model", "tiny", "--builtin", "stdlib-core", "--name", "emb",
                "--max-steps", "30", "--eval-every", "30", "--set", "train.seq_len=64", "--set", "train.micro_batch=16")
    return home


def _docs(folder: Path) -> Path:
    folder.mkdir()
    (folder / "a.py").write_text(PY_A)
    (folder / "b.md").write_text(MD_B)
    (folder / "blob.bin").write_bytes(b"\x89PNG\x00\x00\x01binary")
    (folder / "bad.txt").write_bytes(b"caf\xe9 \xff\xfe not utf-8")
    return folder


def test_chunks_split_at_definitions_and_headings():
    chunks = chunk_text("a.py", PY_A)
    assert [c.title for c in chunks] == ["module", "alpha", "beta"]
    assert (chunks[1].start_line, chunks[1].end_line) == (5, 7) and chunks[1].text.startswith("def alpha")
    assert [c.title for c in chunk_text("b.md", MD_B)] == ["Guide", "Usage"]


def test_index_readd_replaces_only_the_changed_file_and_names_skipped_files(quark, tmp_path):
    docs = _docs(tmp_path / "docs")
    first = quark.json("index", "add", "d", str(docs))
    assert len(first["added"]) == 2 and first["chunks_written"] == 5
    assert sorted(Path(s["path"]).name for s in first["skipped"]) == ["bad.txt", "blob.bin"]
    assert all(s["reason"] for s in first["skipped"])

    from quark.retrieval.documents import DocumentIndex

    index = DocumentIndex(Home.open(quark.home))
    before = {c.path: [(c.id, c.text) for c in index.chunks("d", source=c.path)] for c in index.chunks("d")}
    again = quark.json("index", "add", "d", str(docs))
    assert again["unchanged"] == 2 and again["chunks_written"] == 0

    (docs / "a.py").write_text(PY_A.replace("return y + 1", "return y + 2"))
    edited = quark.json("index", "add", "d", str(docs))
    assert [Path(p).name for p in edited["replaced"]] == ["a.py"] and edited["chunks_removed"] == 3
    after = {c.path: [(c.id, c.text) for c in index.chunks("d", source=c.path)] for c in index.chunks("d")}
    b_path = next(p for p in before if p.endswith("b.md"))
    a_path = next(p for p in before if p.endswith("a.py"))
    assert after[b_path] == before[b_path]  # the other file's chunks are the same rows
    assert {i for i, _ in after[a_path]}.isdisjoint(i for i, _ in before[a_path])
    assert any("y + 2" in text for _, text in after[a_path])

    hits = quark.json("index", "search", "d", "frobnicator install", "--k", "2")["hits"]
    assert hits[0]["path"] == b_path and hits[0]["start_line"] == 1

    removed = quark.json("index", "remove", "d", "--source", b_path)
    assert removed["chunks_removed"] == 2
    assert {c.path for c in index.chunks("d")} == {a_path}
    found = index.conn.execute("SELECT count(*) FROM doc_chunks_fts WHERE doc_chunks_fts MATCH 'frobnicator'")
    assert found.fetchone()[0] == 0
    assert quark.json("index", "stats", "d")["chunks"] == 3
    index.close()
    assert "no index" in quark("index", "search", "nope", "x", expect=1).output


def test_builtin_stdlib_trains_on_the_wider_library_and_holds_out_the_core_pairs_unchanged(tmp_path):
    """--builtin stdlib adds ~10x training pairs from the rest of the standard library; the held-out
    pairs are stdlib-core's, and nothing they ask or rank is in training under another name."""
    wide = write_pairs(tmp_path / "wide", wider=True)
    core = write_pairs(tmp_path / "core", wider=False)
    assert (tmp_path / "wide" / "val.jsonl").read_text() == (tmp_path / "core" / "val.jsonl").read_text()
    assert wide["counts"]["core_train"] == core["counts"]["train"] == core["counts"]["core_train"]
    assert wide["counts"]["train"] > 5 * core["counts"]["train"], wide["counts"]
    val = read_text_pairs(tmp_path / "wide" / "val.jsonl")
    train = read_text_pairs(tmp_path / "wide" / "train.jsonl")
    added = train[core["counts"]["train"]:]
    assert {p.group for p in added}.isdisjoint(p.group for p in val)
    assert {t for p in added for t in (p.query, p.positive)}.isdisjoint(t for p in val for t in (p.query, p.positive))
    assert any(p.group.startswith("builtins.str.") for p in added)  # builtin types' methods too
    assert any(p.kind == "doc-source" and "json.decoder" in p.group for p in added)  # submodules' functions


def test_short_embed_training_beats_the_untrained_pooled_states(embed_home):
    home = Home.open(embed_home)
    val = read_text_pairs(home.dataset_dir("stdlib-core-pairs") / "val.jsonl")
    scores = {}
    for name in ("tiny", "emb"):
        folder = home.model_dir(name)
        model, tok = load_model(folder), load_tokenizer(folder)
        head = load_head(folder, model.config.n_embd)
        assert (head is not None) == (name == "emb")
        scores[name] = retrieval_scores(lambda texts, model=model, tok=tok, head=head: embed_texts(model, tok, texts,
                                                                                               head=head), val)
    assert scores["emb"]["recall_at_10"] > scores["tiny"]["recall_at_10"] + 0.1, scores
    assert scores["emb"]["mrr"] > scores["tiny"]["mrr"], scores


def test_index_with_embedding_model_and_memory_backfill_on_dimension_change(embed_home, tmp_path):
    """Hybrid search through the trained head; memories embedded by another space get re-embedded."""
    from quark.db import connect
    from quark.memory.extract import NewMemory
    from quark.memory.store import MemoryStore
    from quark.retrieval.embedder import ModelEmbedder

    home = Home.open(embed_home)
    quark = Quark(embed_home)
    docs = _docs(tmp_path / "docs")
    report = quark.json("index", "add", "hybrid", str(docs), "--model", "emb")
    assert report["chunks_written"] == 5
    hits = quark.json("index", "search", "hybrid", "Return x doubled", "--k", "3")["hits"]
    assert hits[0]["title"] == "alpha" and hits[0]["vector_rank"] is not None

    # memory written under the 64-wide pooled states of `tiny`, then searched with a 32-wide head
    tiny = ModelEmbedder.load(home.model_dir("tiny"))
    conn = connect(home.db_path)
    store = MemoryStore(conn)
    texts = ["we decided to use SQLite", "the deploy runs on Fridays"]
    store.add([NewMemory("fact", t, "decision") for t in texts], conversation_id=None, source_message_id=None,
              vectors=tiny.embed(texts), embedder=tiny.name)
    narrow = ModelEmbedder(tiny.model, tiny.tokenizer, "narrow-test", head=_narrow_head(tiny.model.config.n_embd))
    missing = store.missing_vectors(narrow.name, 10)
    assert len(missing) == 2
    store.attach_vectors([m.id for m in missing], narrow.embed([m.text for m in missing]), narrow.name)
    assert store.missing_vectors(narrow.name, 10) == []
    hit = store.search("deploy", narrow.embed(["deploy Fridays"])[0], narrow.name, k=1)[0]
    assert hit.memory.text == texts[1] and hit.vector_rank is not None
    assert conn.execute("SELECT count(*) FROM memory_vec_32").fetchone()[0] == 2
    conn.close()


def _narrow_head(n_embd: int):
    import torch

    from quark.models.embedding_head import EmbeddingHead

    torch.manual_seed(0)
    return EmbeddingHead(n_embd, 32).eval()


def test_v1_embeddings_dimensions_and_base64(embed_home):
    from quark.inference import Engine
    from quark.serving.app import create_app
    from quark.serving.server import BackgroundServer

    folder = Home.open(embed_home).model_dir("emb")
    engine = Engine.load(folder)
    head = load_head(folder, engine.model.config.n_embd)
    expected = embed_texts(engine.model, engine.tokenizer, ["hello world"], head=head)[0]
    with BackgroundServer(create_app(engine, embedding_head=head)) as server:
        full = httpx.post(f"{server.url}/v1/embeddings", json={"model": "emb", "input": "hello world"}).json()
        assert np.allclose(full["data"][0]["embedding"], expected, atol=1e-5)
        cut = httpx.post(f"{server.url}/v1/embeddings", json={"model": "emb", "input": ["hello world", "x"],
                                                             "dimensions": 16, "encoding_format": "base64"}).json()
        vector = np.frombuffer(base64.b64decode(cut["data"][0]["embedding"]), dtype="<f4")
        assert vector.shape == (16,) and abs(np.linalg.norm(vector) - 1) < 1e-5
        assert np.allclose(vector, expected[:16] / np.linalg.norm(expected[:16]), atol=1e-5)
        too_wide = httpx.post(f"{server.url}/v1/embeddings", json={"model": "emb", "input": "x", "dimensions": 65})
        assert too_wide.status_code == 400 and too_wide.json()["error"]["param"] == "dimensions"


def test_chat_with_index_lists_numbered_sources(tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    folder = make_tiny_model(home)
    config = json.loads((folder / "config.json").read_text())
    config["max_seq_len"] = 1024  # RoPE tables follow the config: room for sources in the prompt
    (folder / "config.json").write_text(json.dumps(config))
    quark = Quark(home)
    docs = _docs(tmp_path / "docs")
    quark.json("index", "add", "d", str(docs))
    result = quark.json("chat", "--index", "d", "--message", "How do I install the frobnicator?", "--max-tokens", "4",
                        "--temperature", "0")
    sources = result["sources"]
    assert sources and [s["n"] for s in sources] == list(range(1, len(sources) + 1))
    assert sources[0]["path"].endswith("b.md") and sources[0]["start_line"] == 1 and sources[0]["ref"].endswith(":1-4")
    assert result["usage"]["sections"]["sources"] > 0
    assert result["citations"] == citations(result["reply"], len(sources))


def test_citations_and_corrupted_twins():
    from quark.tui.slash import SlashCommand, parse_slash

    assert parse_slash("/index docs") == SlashCommand("index", "docs")
    assert citations("Yes [2], see also [1, 3] and [9].", 3) == [2, 1, 3]
    corruptor = Corruptor.for_passages(["def split(s): pass", "def join(parts): pass", "timeout = 30"], seed=1)
    twin = corruptor.twin("What does `shlex.quote` do?", "def quote(s):\n    return s")
    assert twin is not None and "quote" not in twin and twin.endswith("(s):\n    return s")
    assert corruptor.twin("How long is the timeout of 30 s?", "timeout = 30") != "timeout = 30"
    assert "Return x doubled" not in strip_docstring('def alpha(x):\n    """Return x doubled."""\n    return 2 * x\n')


def test_grounded_synth_rows_cite_the_gold_source(quark):
    meta = quark.json("data", "synth", "--kind", "grounded", "--name", "rag", "--val-fraction", "0.2")
    folder = Path(meta["path"])
    row = json.loads((folder / "train.jsonl").read_text().splitlines()[0])
    system, answer = row["messages"][0]["content"], row["messages"][-1]["content"]
    assert citations(answer, len(row["sources"])) == row["gold"]
    gold = row["sources"][row["gold"][0] - 1]
    assert f"[{gold['n']}] {gold['chunk_id']}" in system
    pref = json.loads((folder / "preferences" / "train.jsonl").read_text().splitlines()[0])
    extra = pref["rejected"][len(pref["chosen"]):].strip(" .")
    assert pref["rejected"].startswith(pref["chosen"]) and extra and extra not in pref["prompt"][0]["content"]


def test_eval_docqa_with_an_index_reports_retrieval_recall(quark, tmp_path):
    from quark.evaluation.docqa import builtin_examples

    folder = tmp_path / "topics"
    folder.mkdir()
    for example in builtin_examples(5):
        for _, text in example.passages:
            (folder / f"{abs(hash(text))}.txt").write_text(text)
    quark.json("index", "add", "topics", str(folder))
    result = quark.json("eval", "docqa", "--builtin", "stdlib", "--limit", "5", "--index", "topics", "--k", "3",
                        "--reference")
    metrics = result["metrics"] if "metrics" in result else result
    assert metrics["retrieval_k"] == 3 and metrics["retrieval_recall_at_k"] >= 0.6
    assert metrics["citation_coverage"] == metrics["retrieval_recall_at_k"]  # the reference cites every gold chunk


def test_reranker_prefers_the_supported_passage_over_its_corrupted_twin(embed_home, tmp_path):
    quark = Quark(embed_home)
    summary = quark.json("finetune", "rerank", "--model", "tiny", "--builtin", "stdlib-core", "--name", "rr",
                         "--max-steps", "20", "--eval-every", "20", "--set", "train.seq_len=96")
    assert summary["val_twin_questions"] > 20
    assert summary["val_twin_accuracy"] >= 0.8, summary  # the blueprint's gate, on held-out questions
    assert summary["val_negative_accuracy"] > 0.5, summary

    from quark.retrieval.reranker import Reranker

    reranker = Reranker.load(Home.open(embed_home).model_dir("rr"))
    question = "What does `shlex.quote` do?"
    supported = "def quote(s):\n    \"\"\"Return a shell-escaped version of the string *s*.\"\"\""
    twin = "def split(s):\n    \"\"\"Return a shell-escaped version of the string *s*.\"\"\""
    assert reranker.rank(question, [twin, supported])[0] == 1
    docs = _docs(tmp_path / "docs")
    quark.json("index", "add", "rr-docs", str(docs))
    hits = quark.json("index", "search", "rr-docs", "install the frobnicator", "--reranker", "rr", "--k", "2")["hits"]
    assert hits[0]["path"].endswith("b.md") and hits[0]["rerank_score"] is not None
    assert "not a reranker" in quark("index", "search", "rr-docs", "x", "--reranker", "tiny", expect=1).output


def test_approximate_index_recall_is_measured_on_held_out_queries_and_gates_loading(tmp_path: Path) -> None:
    """The HNSW index records recall@10 against the exact scan for vectors it has not seen, is
    loaded only for the generation it was built from, and a record under the target keeps search exact."""
    from quark.retrieval import approximate

    rng = np.random.default_rng(0)
    vectors = rng.standard_normal((3000, 16)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    keys = np.arange(10, 3010, dtype=np.uint64)
    shuffled = rng.permutation(3000)  # chunk ids arrive in any order
    built = approximate.ApproximateIndex.build(tmp_path, keys[shuffled], vectors[shuffled], generation=3,
                                               embedder="e")
    assert built.record["recall_sample"] == approximate.SAMPLE and built.record["vectors"] == 3000
    assert built.record["recall_at_10"] >= approximate.TARGET_RECALL
    assert len(built.index) == 3000  # the held-out sample was added after the check
    loaded = approximate.ApproximateIndex.load(tmp_path, generation=3, embedder="e")
    assert loaded is not None
    queries = rng.standard_normal((20, 16)).astype(np.float32)
    queries /= np.linalg.norm(queries, axis=1, keepdims=True)
    exact = (queries @ vectors.T).argsort(axis=1)[:, ::-1][:, :10] + 10
    found = [loaded.search(q, 10) for q in queries]
    assert np.mean([len(set(f) & set(e.tolist())) / 10 for f, e in zip(found, exact)]) >= 0.9
    # nearest first, by the full-precision score (the 8-bit graph's candidates are rescored)
    assert all(np.all(np.diff(vectors[np.array(f) - 10] @ q) <= 1e-6) for f, q in zip(found, queries))
    assert np.mean([f[0] == e[0] for f, e in zip(found, exact.tolist())]) >= 0.9
    assert approximate.ApproximateIndex.load(tmp_path, generation=4, embedder="e") is None
    record = json.loads((tmp_path / approximate.RECORD).read_text())
    (tmp_path / approximate.RECORD).write_text(json.dumps({**record, "recall_at_10": 0.5}))
    assert approximate.ApproximateIndex.load(tmp_path, generation=3, embedder="e") is None
