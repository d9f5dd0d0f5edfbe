"""SimHash near-duplicate detection (Charikar 2002; Manku, Jain and Das Sarma 2007), beside MinHash.

A document's fingerprint is 64 bits: every distinct word 3-gram of its simplified text (datatrove's
`simplify_text`, the normalisation MinHash uses) is hashed to 64 bits, and bit i of the
fingerprint is set when more than half of the shingles have bit i set. Similar texts get
fingerprints a few bits apart; two documents are near duplicates when their fingerprints differ in
at most `max_distance` bits.

Finding them without comparing every pair: the 64 bits are cut into `max_distance + 1` bands. Two
fingerprints within `max_distance` bits of each other agree exactly on at least one band (the
pigeonhole principle), so only documents that share a band value are compared, and the lookup
misses no pair within the distance.

Two datatrove blocks, mirroring MinHash's stages:
    SimhashSignature   one task per shard: the fingerprint of each document, by position
    SimhashCluster     one task: banded lookup, exact distance check, union-find; per shard the
                       positions to drop (every cluster keeps its first member)
The positions are then dropped by dedup.PositionFilter, as exact duplicates are.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from datatrove.data import DocumentsPipeline
from datatrove.pipeline.base import PipelineStep
from datatrove.utils.text import simplify_text

BITS = 64
SHINGLE_WORDS = 3
_BIT_POSITIONS = np.arange(BITS, dtype=np.uint64)
_MIX = (np.uint64(0x9E3779B97F4A7C15), np.uint64(0xBF58476D1CE4E5B9), np.uint64(0x94D049BB133111EB))


@dataclass(frozen=True)
class SimhashConfig:
    """`max_distance`: most differing bits for two documents to count as near duplicates."""

    max_distance: int = 6

    def __post_init__(self) -> None:
        if not 0 <= self.max_distance < BITS // 2:
            raise ValueError(f"max_distance must be in [0, {BITS // 2}), got {self.max_distance}")

    @classmethod
    def for_threshold(cls, similarity: float | None) -> SimhashConfig:
        """From a similarity in (0.5, 1]: the share of the 64 bits two near duplicates agree on."""
        return cls() if similarity is None else cls(max_distance=int(round((1.0 - similarity) * BITS)))

    @property
    def bands(self) -> list[tuple[int, int]]:
        """(shift, width) of each band, the 64 bits split as evenly as possible."""
        count = self.max_distance + 1
        widths = [BITS // count + (1 if index < BITS % count else 0) for index in range(count)]
        shifts = np.cumsum([0, *widths[:-1]]).tolist()
        return list(zip(shifts, widths))


def _word_hashes(words: list[str]) -> np.ndarray:
    """A stable 64-bit hash per word (blake2b: Python's own hash() differs between processes)."""
    cache: dict[str, int] = {}
    return np.array([cache.setdefault(word, int.from_bytes(hashlib.blake2b(word.encode("utf-8"), digest_size=8)
                                                           .digest(), "little")) for word in words], dtype=np.uint64)


def _mix(values: np.ndarray) -> np.ndarray:
    """splitmix64's finaliser: spreads every input bit over every output bit."""
    values = (values ^ (values >> np.uint64(30))) * _MIX[1]
    values = (values ^ (values >> np.uint64(27))) * _MIX[2]
    return values ^ (values >> np.uint64(31))


def shingle_hashes(text: str) -> np.ndarray:
    """The distinct 64-bit hashes of the word 3-grams of the simplified text."""
    words = simplify_text(text).split()
    if not words:
        return np.zeros(0, dtype=np.uint64)
    hashes = _word_hashes(words)
    if len(hashes) >= SHINGLE_WORDS:  # combine consecutive words order-sensitively, then mix
        combined = hashes[: len(hashes) - SHINGLE_WORDS + 1].copy()
        for offset in range(1, SHINGLE_WORDS):
            combined = combined * _MIX[0] + hashes[offset: len(hashes) - SHINGLE_WORDS + 1 + offset]
        hashes = combined
    return np.unique(_mix(hashes))


def fingerprint(text: str) -> int:
    """The 64-bit SimHash of `text` (0 for a text without words)."""
    hashes = shingle_hashes(text)
    if not len(hashes):
        return 0
    ones = ((hashes[:, None] >> _BIT_POSITIONS) & np.uint64(1)).sum(axis=0)
    bits = (ones * 2 > len(hashes)).astype(np.uint64)
    return int((bits << _BIT_POSITIONS).sum(dtype=np.uint64))


def distance(a: int, b: int) -> int:
    return (a ^ b).bit_count()


class SimhashSignature(PipelineStep):
    """Write `<rank>.npy`: the fingerprint of each document this rank sees, in order."""

    type = "Dedup"
    name = "SimHash signatures"

    def __init__(self, output_folder: str):
        super().__init__()
        self.output_folder = output_folder

    def run(self, data: DocumentsPipeline, rank: int = 0, world_size: int = 1) -> DocumentsPipeline:
        prints = []
        for doc in data or ():
            with self.track_time():
                prints.append(fingerprint(doc.text))
            self.stat_update("fingerprinted")
        folder = Path(self.output_folder)
        folder.mkdir(parents=True, exist_ok=True)
        np.save(folder / f"{rank:05d}.npy", np.array(prints, dtype=np.uint64))
        yield from ()


def near_duplicate_clusters(prints: np.ndarray, config: SimhashConfig) -> np.ndarray:
    """For each fingerprint, the index of its cluster's first member (itself when it is unique)."""
    parent = np.arange(len(prints))

    def root(index: int) -> int:
        while parent[index] != index:
            parent[index] = parent[parent[index]]
            index = parent[index]
        return index

    for shift, width in config.bands:
        keys = (prints >> np.uint64(shift)) & np.uint64((1 << width) - 1)
        order = np.argsort(keys, kind="stable")
        boundaries = np.flatnonzero(np.diff(keys[order])) + 1
        for group in np.split(order, boundaries):
            for position, member in enumerate(group[:-1]):
                others = group[position + 1:]
                close = others[np.bitwise_count(prints[others] ^ prints[member]) <= config.max_distance]
                for other in close:
                    first, second = root(int(member)), root(int(other))
                    if first != second:
                        parent[max(first, second)] = min(first, second)  # the earliest member stays the root
    return np.array([root(index) for index in range(len(prints))], dtype=np.int64)


class SimhashCluster(PipelineStep):
    """One task: cluster every rank's fingerprints and write `<rank>.json`, the positions to drop."""

    type = "Dedup"
    name = "SimHash clusters"

    def __init__(self, signatures_folder: str, output_folder: str, tasks: int, config: SimhashConfig):
        super().__init__()
        self.signatures_folder, self.output_folder = signatures_folder, output_folder
        self.tasks, self.config = tasks, config

    def run(self, data: DocumentsPipeline = None, rank: int = 0, world_size: int = 1) -> DocumentsPipeline:
        per_rank = []
        for task in range(self.tasks):
            path = Path(self.signatures_folder) / f"{task:05d}.npy"
            per_rank.append(np.load(path) if path.exists() else np.zeros(0, dtype=np.uint64))
        prints = np.concatenate(per_rank) if per_rank else np.zeros(0, dtype=np.uint64)
        with self.track_time():
            roots = near_duplicate_clusters(prints, self.config)
        duplicate = roots != np.arange(len(prints))
        out = Path(self.output_folder)
        out.mkdir(parents=True, exist_ok=True)
        start = 0
        for task, signatures in enumerate(per_rank):
            drop = np.flatnonzero(duplicate[start: start + len(signatures)]).tolist()
            (out / f"{task:05d}.json").write_text(json.dumps(drop))
            start += len(signatures)
        self.stat_update("near_duplicates", value=int(duplicate.sum()))
        return data
