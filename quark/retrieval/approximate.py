"""The approximate vector index of a large document index: usearch HNSW, kept beside quark.db.

    indexes/<name>/vectors.usearch    the HNSW graph (keys are chunk ids)
    indexes/<name>/vectors.json       the index generation it was built from, its recall, settings

Exact search (sqlite-vec's brute-force scan) stays the truth: the approximate index is only used
while `vectors.json` records the document index's current generation, and every build measures its
recall@10 against the exact scan on a sample of stored vectors, widening the search beam
(`expansion_search`) until it reaches TARGET_RECALL; an index that cannot reach it even at the
widest beam is kept (its record says how far it got) but not used. Both files are written to temporary names and
renamed, the graph first and its record last, so a reader never pairs a new graph with an old record.
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
CONNECTIVITY, EXPANSION_ADD = 16, 64
SEARCH_BEAMS = (64, 128, 256, 512)
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
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        keys = np.ascontiguousarray(keys, dtype=np.uint64)
        index = Index(ndim=vectors.shape[1], metric="cos", dtype="f32", connectivity=CONNECTIVITY,
                      expansion_add=EXPANSION_ADD, expansion_search=SEARCH_BEAMS[0])
        index.add(keys, vectors)
        sample = np.random.default_rng(seed).choice(len(keys), size=min(SAMPLE, len(keys)), replace=False)
        exact = [[int(keys[i]) for i in row] for row in dense_rankings(vectors[sample], vectors, 10)]
        recall, beam = 0.0, SEARCH_BEAMS[0]
        for beam in SEARCH_BEAMS:
            index.expansion_search = beam
            found = index.search(vectors[sample], 10).keys
            recall = float(np.mean([len(set(map(int, f)) & set(e)) / len(e) for f, e in zip(found, exact)]))
            if recall >= TARGET_RECALL:
                break
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        tmp = folder / f".{GRAPH}.tmp-{os.getpid()}"
        index.save(str(tmp))
        os.replace(tmp, folder / GRAPH)
        record = {"generation": generation, "embedder": embedder, "vectors": int(len(keys)),
                  "dim": int(vectors.shape[1]),
                  "connectivity": CONNECTIVITY, "expansion_add": EXPANSION_ADD, "expansion_search": beam,
                  "recall_at_10": recall, "recall_sample": int(len(sample))}
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
        return [int(key) for key in self.index.search(np.asarray(vector, dtype=np.float32), k, threads=1).keys]


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
