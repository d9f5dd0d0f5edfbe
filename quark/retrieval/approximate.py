"""The approximate vector index of a large document index: usearch HNSW, kept beside quark.db.

    indexes/<name>/vectors.usearch    the HNSW graph (keys are chunk ids)
    indexes/<name>/vectors.json       the index generation it was built from, its recall, settings

Exact search (sqlite-vec's brute-force scan) stays the truth: the approximate index is only used
while `vectors.json` records the document index's current generation, and every build measures its
recall@10 against the exact scan on a sample of stored vectors held out of the graph until it is
measured (so they are queries the graph has not seen, as real ones are), widening the search
beam (`expansion_search`) until it reaches TARGET_RECALL; an index that cannot reach it even at the
widest beam is kept (its record says how far it got) but not used.

The graph's settings were measured on random unit vectors of dimension 128 (the hardest case: no
cluster structure; fresh random queries, as in benchmarks/vector_search.py): connectivity 16 /
expansion_add 64 reached only 0.86 recall@10 at 100k even with a beam of 1024, because a sparse
graph built with a narrow beam leaves high-dimensional neighbourhoods poorly connected; connectivity
32 / expansion_add 128 reaches 0.95 at a beam of 128 at 10k and 0.99 at 1024 at 100k (under 0.95 at
512), so the beams are tried in small steps and the narrowest that reaches the target is kept.
Vectors are unit-norm (the embedder's contract), so the inner product ranks exactly as cosine does
and its kernel is cheaper. Both files are written to temporary names and renamed, the graph first
and its record last, so a reader never pairs a new graph with an old record.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from usearch.index import Index

from quark.atomic import write_text
from quark.retrieval.metrics import dense_rankings

GRAPH, RECORD = "vectors.usearch", "vectors.json"
CONNECTIVITY, EXPANSION_ADD = 32, 128
SEARCH_BEAMS = (64, 96, 128, 192, 256, 384, 512, 768, 1024)  # the narrowest that reaches the target wins
METRIC = "ip"  # on unit vectors: the same order as cosine
TARGET_RECALL = 0.95
SAMPLE = 200  # stored vectors used as queries for the recall check


@dataclass
class ApproximateIndex:
    index: Index
    record: dict

    @classmethod
    def build(cls, folder: Path, keys: np.ndarray, vectors: np.ndarray, *, generation: int, embedder: str,
              seed: int = 0) -> ApproximateIndex:
        """Build, check recall against the exact scan, and publish atomically."""
        vectors = _unit(np.ascontiguousarray(vectors, dtype=np.float32))
        keys = np.ascontiguousarray(keys, dtype=np.uint64)
        index = Index(ndim=vectors.shape[1], metric=METRIC, dtype="f32", connectivity=CONNECTIVITY,
                      expansion_add=EXPANSION_ADD, expansion_search=SEARCH_BEAMS[0])
        # The sample is held out of the graph while recall is measured, then added: a stored vector
        # is found through its own links, so querying with it overstates recall (0.98 against 0.83
        # for fresh queries at 10k), and real queries are never in the index.
        held = np.zeros(len(keys), dtype=bool)
        held[np.random.default_rng(seed).choice(len(keys), size=min(SAMPLE, len(keys) // 2), replace=False)] = True
        index.add(keys[~held], vectors[~held])
        exact = [[int(key) for key in keys[~held][row]] for row in dense_rankings(vectors[held], vectors[~held], 10)]
        recall, beam = 0.0, SEARCH_BEAMS[0]
        for beam in SEARCH_BEAMS:
            index.expansion_search = beam
            found = index.search(vectors[held], 10).keys
            recall = float(np.mean([len(set(map(int, f)) & set(e)) / len(e) for f, e in zip(found, exact)] or [1.0]))
            if recall >= TARGET_RECALL:
                break
        index.add(keys[held], vectors[held])
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        tmp = folder / f".{GRAPH}.tmp-{os.getpid()}"
        index.save(str(tmp))
        os.replace(tmp, folder / GRAPH)
        record = {"generation": generation, "embedder": embedder, "vectors": int(len(keys)),
                  "dim": int(vectors.shape[1]),
                  "metric": METRIC, "connectivity": CONNECTIVITY, "expansion_add": EXPANSION_ADD,
                  "expansion_search": beam,
                  "recall_at_10": recall, "recall_sample": int(held.sum())}
        write_text(folder / RECORD, json.dumps(record, indent=2))
        return cls(index, record)

    @classmethod
    def load(cls, folder: Path, *, generation: int, embedder: str) -> ApproximateIndex | None:
        """The published index when it matches this generation and vector space, else None."""
        record_path, graph = Path(folder) / RECORD, Path(folder) / GRAPH
        try:
            record = json.loads(record_path.read_text())
        except (OSError, ValueError):
            return None
        if record.get("generation") != generation or record.get("embedder") != embedder or not graph.is_file():
            return None
        if record.get("recall_at_10", 0.0) < TARGET_RECALL:  # the widest beam fell short: stay exact
            return None
        index = Index.restore(str(graph), view=True)
        if index is None:
            return None
        index.expansion_search = int(record["expansion_search"])
        return cls(index, record)

    def search(self, vector: np.ndarray, k: int) -> list[int]:
        """Chunk ids of the k nearest vectors, nearest first."""
        # One thread: a single query is microseconds of work, and a thread pool per call costs more.
        query = _unit(np.asarray(vector, dtype=np.float32))
        return [int(key) for key in self.index.search(query, k, threads=1).keys]


def _unit(vectors: np.ndarray) -> np.ndarray:
    """Rows scaled to unit length (already so from the embedder; cheap insurance for the inner product)."""
    norms = np.linalg.norm(vectors, axis=-1, keepdims=True)
    return vectors / np.where(norms > 0, norms, 1.0)


def read_record(folder: Path) -> dict | None:
    """The published record (generation, recall, settings), whether or not it is usable."""
    try:
        return json.loads((Path(folder) / RECORD).read_text())
    except (OSError, ValueError):
        return None


def remove(folder: Path) -> None:
    """Drop the approximate index (the record first, so a reader never trusts a half-removed one)."""
    for name in (RECORD, GRAPH):
        try:
            (Path(folder) / name).unlink()
        except FileNotFoundError:
            pass
