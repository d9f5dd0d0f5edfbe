"""Duplicate removal: exact (sha256 of the cleaned text) first, then near duplicates with datatrove's
MinHash stages (or SimHash, quark.data.simhash) on what is left.

Exact duplicates are settled before MinHash so that each dropped document has one reason, and so a
document and its exact copy can never both be dropped (MinHash keeps one member of each cluster,
the exact index keeps the first copy: applying both to the same set could drop every copy).
"""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow.parquet as pq
from datatrove.data import Document, DocumentsPipeline
from datatrove.pipeline.base import PipelineStep
from datatrove.pipeline.dedup.minhash import MinhashConfig, MinhashDedupFilter
from datatrove.pipeline.filters.base_filter import BaseFilter
from datatrove.utils.hashing import HashConfig
from datatrove.utils.typeshelper import StatHints
from datatrove.utils.word_tokenizers import WordTokenizer, simple_span_tokenize

# 14 bands of 8 hashes: documents with ~0.75 Jaccard similarity of word 5-grams or more are caught
# with high probability. sha1 hashing: datatrove's default xxhash path fails on current xxhash.
MINHASH = MinhashConfig(n_grams=5, num_buckets=14, hashes_per_bucket=8, seed=1,
                        hash_config=HashConfig(precision=64, hash_fc="sha1"))
MAX_MINHASH_HASHES = 160  # bands x rows: signature cost grows with it


def minhash_config(threshold: float | None) -> MinhashConfig:
    """The bands x rows whose LSH threshold (1/bands)^(1/rows) is closest to `threshold` (a Jaccard
    similarity of word 5-grams); None gives the ingest default (14 x 8, about 0.72)."""
    if threshold is None:
        return MINHASH
    bands, rows = min(((b, r) for r in range(2, 17) for b in range(1, 65) if b * r <= MAX_MINHASH_HASHES),
                      key=lambda br: (abs((1 / br[0]) ** (1 / br[1]) - threshold), br[0] * br[1]))
    return MinhashConfig(n_grams=MINHASH.n_grams, num_buckets=bands, hashes_per_bucket=rows, seed=MINHASH.seed,
                         hash_config=MINHASH.hash_config)


class SplitWordTokenizer(WordTokenizer):
    """Whitespace words. MinHash tokenizes text that simplify_text has already lower-cased and
    stripped of punctuation, so splitting on spaces gives the words spaCy would, ~50x faster."""

    def word_tokenize(self, text: str) -> list[str]:
        return text.split()

    def sent_tokenize(self, text: str) -> list[str]:
        return [line for line in text.splitlines() if line.strip()]

    def span_tokenize(self, text: str) -> list[tuple[int, int]]:
        return list(simple_span_tokenize(text, self.sent_tokenize(text)))


class ExactDedupIndex(PipelineStep):
    """One task: read the sha256 column of every staged shard, keep each text's first copy in
    (rank, position) order, and write per rank the positions to drop."""

    type = "Dedup"
    name = "Exact dedup index (sha256)"

    def __init__(self, staging_dir: str, index_dir: str, tasks: int):
        super().__init__()
        self.staging_dir, self.index_dir, self.tasks = staging_dir, index_dir, tasks

    def run(self, data: DocumentsPipeline = None, rank: int = 0, world_size: int = 1) -> DocumentsPipeline:
        seen: set[str] = set()
        out = Path(self.index_dir)
        out.mkdir(parents=True, exist_ok=True)
        for task in range(self.tasks):
            shard = Path(self.staging_dir) / f"{task:05d}.parquet"
            digests = pq.read_table(shard, columns=["sha256"]).column("sha256").to_pylist() if shard.exists() else []
            drop = []
            for position, digest in enumerate(digests):
                if digest in seen:
                    drop.append(position)
                seen.add(digest)
            (out / f"{task:05d}.json").write_text(json.dumps(drop))
            self.stat_update("duplicates", value=len(drop))
        return data


class PositionFilter(BaseFilter):
    """Drop the positions an index stage chose for this rank (`<index_dir>/<rank>.json`), as `reason`."""

    name = "Drop by position"

    def __init__(self, index_dir: str, reason: str):
        super().__init__()
        self.index_dir, self.reason = index_dir, reason
        self._drop: set[int] = set()
        self._position = 0

    def run(self, data: DocumentsPipeline, rank: int = 0, world_size: int = 1) -> DocumentsPipeline:
        self._drop = set(json.loads((Path(self.index_dir) / f"{rank:05d}.json").read_text()))
        self._position = 0
        yield from super().run(data, rank, world_size)

    def filter(self, doc: Document) -> bool | tuple[bool, str]:
        position, self._position = self._position, self._position + 1
        return (False, self.reason) if position in self._drop else True


class ExactDedupFilter(PositionFilter):
    """Drop the positions ExactDedupIndex chose for this rank."""

    name = "Exact dedup filter"

    def __init__(self, index_dir: str):
        super().__init__(index_dir, "exact_duplicate")


class NearDuplicateFilter(MinhashDedupFilter):
    """datatrove's MinHash stage 4, also counting its drops as `dropped_near_duplicate` so the
    ingest summary reads every reason the same way."""

    def stat_update(self, *labels: str, value: int = 1, unit: str | None = None) -> None:
        if StatHints.dropped in labels:
            labels = (*labels, "dropped_near_duplicate")
        super().stat_update(*labels, value=value, unit=unit)
