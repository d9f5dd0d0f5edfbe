"""The approximate vector index of a large document index: usearch HNSW, kept beside quark.db.

    indexes/<name>/vectors.usearch    the HNSW graph over 8-bit vectors (keys are chunk ids)
    indexes/<name>/vectors.npy        the full-precision vectors, sorted by chunk id, for rescoring
    indexes/<name>/keys.npy           their chunk ids, ascending
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
and its kernel is cheaper.

The graph holds the vectors quantised to 8 bits and a search asks it for RESCORE_FACTOR times the
candidates wanted, which are then re-ranked by their exact inner product with the full-precision
vectors (memory-mapped, so only the candidates' rows are read). Measured on 200k random 128-d unit
vectors (2 idle cores, connectivity 32 / expansion_add 128, top 10): the f32 graph built in 127 s
and reached recall@10 0.952 at a beam of 1024 in 8.6 ms p50; the i8 graph built in 40 s, and with
40 candidates rescored reached 0.962 at the same beam in 4.7 ms (0.995 at 2048 in 8.2 ms). Without
the rescoring the i8 graph's own order stops near 0.88 whatever the beam: the quantisation, not the
graph, was then the limit.

Every file is written to a temporary name and renamed, the record last, so a reader never pairs a
new graph with an old record.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from usearch.index import Index

from quark.atomic import write_text
from quark.retrieval.metrics import dense_rankings

GRAPH, VECTORS, KEYS, RECORD = "vectors.usearch", "vectors.npy", "keys.npy", "vectors.json"
CONNECTIVITY, EXPANSION_ADD = 32, 128
GRAPH_DTYPE = "i8"
RESCORE_FACTOR, RESCORE_MIN = 4, 40  # candidates fetched from the graph per wanted result, and at least
# Search beams tried in turn: the narrowest that reaches the target wins.
SEARCH_BEAMS = (64, 96, 128, 192, 256, 384, 512, 768, 1024, 1536, 2048, 3072, 4096)
METRIC = "ip"  # on unit vectors: the same order as cosine
TARGET_RECALL = 0.95
SAMPLE = 200  # stored vectors used as queries for the recall check


@dataclass
class ApproximateIndex:
    index: Index
    record: dict
    keys: np.ndarray  # chunk ids, ascending
    vectors: np.ndarray  # full precision, row i belongs to keys[i]

    @classmethod
    def build(cls, folder: Path, keys: np.ndarray, vectors: np.ndarray, *, generation: int, embedder: str,
              seed: int = 0) -> ApproximateIndex:
        """Build, check recall against the exact scan, and publish atomically."""
        order = np.argsort(np.asarray(keys, dtype=np.uint64), kind="stable")
        keys = np.ascontiguousarray(np.asarray(keys, dtype=np.uint64)[order])
        vectors = _unit(np.ascontiguousarray(np.asarray(vectors, dtype=np.float32)[order]))
        index = Index(ndim=vectors.shape[1], metric=METRIC, dtype=GRAPH_DTYPE, connectivity=CONNECTIVITY,
                      expansion_add=EXPANSION_ADD, expansion_search=SEARCH_BEAMS[0])
        # The sample is held out of the graph while recall is measured, then added: a stored vector
        # is found through its own links, so querying with it overstates recall (0.98 against 0.83
        # for fresh queries at 10k), and real queries are never in the index.
        held = np.zeros(len(keys), dtype=bool)
        held[np.random.default_rng(seed).choice(len(keys), size=min(SAMPLE, len(keys) // 2), replace=False)] = True
        index.add(keys[~held], vectors[~held])
        built = cls(index, {}, keys[~held], vectors[~held])
        exact = [[int(key) for key in keys[~held][row]] for row in dense_rankings(vectors[held], vectors[~held], 10)]
        recall, beam = 0.0, SEARCH_BEAMS[0]
        for beam in SEARCH_BEAMS:
            index.expansion_search = beam
            found = [built.search(query, 10) for query in vectors[held]]
            recall = float(np.mean([len(set(f) & set(e)) / len(e) for f, e in zip(found, exact)] or [1.0]))
            if recall >= TARGET_RECALL:
                break
        index.add(keys[held], vectors[held])
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        _publish(folder / GRAPH, lambda tmp: index.save(str(tmp)))
        _publish(folder / VECTORS, lambda tmp: np.save(tmp, vectors, allow_pickle=False))
        _publish(folder / KEYS, lambda tmp: np.save(tmp, keys, allow_pickle=False))
        record = {"generation": generation, "embedder": embedder, "vectors": int(len(keys)),
                  "dim": int(vectors.shape[1]), "metric": METRIC, "dtype": GRAPH_DTYPE,
                  "connectivity": CONNECTIVITY, "expansion_add": EXPANSION_ADD, "expansion_search": beam,
                  "rescore_factor": RESCORE_FACTOR, "recall_at_10": recall, "recall_sample": int(held.sum())}
        write_text(folder / RECORD, json.dumps(record, indent=2))
        return cls(index, record, keys, vectors)

    @classmethod
    def load(cls, folder: Path, *, generation: int, embedder: str) -> ApproximateIndex | None:
        """The published index when it matches this generation and vector space, else None."""
        folder = Path(folder)
        record = read_record(folder)
        if record is None or record.get("generation") != generation or record.get("embedder") != embedder:
            return None
        if record.get("dtype") != GRAPH_DTYPE:  # built by an earlier version: rebuilt on the next change
            return None
        if record.get("recall_at_10", 0.0) < TARGET_RECALL:  # the widest beam fell short: stay exact
            return None
        try:
            index = Index.restore(str(folder / GRAPH), view=True)
            keys = np.load(folder / KEYS, mmap_mode="r", allow_pickle=False)
            vectors = np.load(folder / VECTORS, mmap_mode="r", allow_pickle=False)
        except (OSError, ValueError):
            return None
        if index is None or len(keys) != record["vectors"] or vectors.shape != (len(keys), record["dim"]):
            return None
        index.expansion_search = int(record["expansion_search"])
        return cls(index, record, keys, vectors)

    def search(self, vector: np.ndarray, k: int) -> list[int]:
        """Chunk ids of the k nearest vectors, nearest first: the graph's candidates, rescored exactly."""
        # One thread: a single query is microseconds of work, and a thread pool per call costs more.
        query = _unit(np.asarray(vector, dtype=np.float32))
        candidates = self.index.search(query, max(RESCORE_FACTOR * k, RESCORE_MIN), threads=1).keys
        rows = np.searchsorted(self.keys, candidates)
        scores = np.asarray(self.vectors[rows]) @ query
        best = np.argsort(-scores, kind="stable")[:k]
        return [int(key) for key in candidates[best]]


def _publish(path: Path, write: Callable[[Path], object]) -> None:
    """Write through `write(tmp)` to a temporary name beside `path`, then rename over it."""
    tmp = path.with_name(f".{path.stem}.tmp-{os.getpid()}{path.suffix}")  # np.save keeps a .npy suffix
    write(tmp)
    os.replace(tmp, path)


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
    for name in (RECORD, GRAPH, VECTORS, KEYS):
        try:
            (Path(folder) / name).unlink()
        except FileNotFoundError:
            pass
