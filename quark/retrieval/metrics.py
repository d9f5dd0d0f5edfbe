"""Retrieval metrics over rankings: recall@k and mean reciprocal rank.

A ranking is a list of item ids, best first; `relevant` is the set of ids that answer the query.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence

import numpy as np


def recall_at_k(rankings: Sequence[Sequence[int]], relevant: Sequence[Collection[int]], k: int) -> float:
    """Fraction of queries with a relevant item among their first k."""
    hits = [any(item in gold for item in ranking[:k]) for ranking, gold in zip(rankings, relevant)]
    return float(np.mean(hits)) if hits else 0.0


def mrr(rankings: Sequence[Sequence[int]], relevant: Sequence[Collection[int]], k: int | None = None) -> float:
    """Mean over queries of 1/rank of the first relevant item (0 when none is ranked, or none in the first k)."""
    scores = []
    for ranking, gold in zip(rankings, relevant):
        rank = next((i for i, item in enumerate(ranking[:k] if k else ranking, 1) if item in gold), None)
        scores.append(1.0 / rank if rank else 0.0)
    return float(np.mean(scores)) if scores else 0.0


def dense_rankings(queries: np.ndarray, passages: np.ndarray, k: int) -> list[list[int]]:
    """Top-k passage indices per query by cosine (both sides unit-norm), best first."""
    scores = queries @ passages.T
    k = min(k, passages.shape[0])
    top = np.argpartition(-scores, k - 1, axis=1)[:, :k]
    order = np.take_along_axis(scores, top, axis=1).argsort(axis=1)[:, ::-1]
    return np.take_along_axis(top, order, axis=1).tolist()
