"""Memory retrieval latency at 10k and 100k memories.

Fills a throwaway quark.db with synthetic memories (Zipf-distributed words from a 5,000-word
vocabulary, 6-30 words each) and random unit embeddings of the model's dimension, then times the
hybrid search the chat session runs every turn (FTS5 BM25 + sqlite-vec cosine, 50 candidates
each, reciprocal-rank fusion, rows fetched) and each side alone. The query embedding is given:
computing it is the model's cost, measured by benchmarks/tui_latency.py.

    .venv/bin/python benchmarks/memory_retrieval.py --sizes 10000 100000 --dim 64

With --keep DIR the filled databases are kept (one per dimension and size), so a re-run skips
the filling.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

from quark.db import connect, transaction
from quark.memory.extract import NewMemory
from quark.memory.store import MemoryStore

EMBEDDER = "benchmark"


def vocabulary(rng: np.random.Generator, size: int = 5000) -> list[str]:
    letters = np.array(list("abcdefghijklmnopqrstuvwxyz"))
    return ["".join(rng.choice(letters, rng.integers(3, 10))) for _ in range(size)]


def sentences(rng: np.random.Generator, words: list[str], n: int, low: int, high: int) -> list[str]:
    ranks = np.arange(1, len(words) + 1)
    p = (1.0 / ranks) / (1.0 / ranks).sum()  # Zipf: a few words everywhere, most words rare
    return [" ".join(rng.choice(words, rng.integers(low, high + 1), p=p)) for _ in range(n)]


def unit(rng: np.random.Generator, n: int, dim: int) -> np.ndarray:
    v = rng.standard_normal((n, dim)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def fill(store: MemoryStore, rng: np.random.Generator, words: list[str], target: int, dim: int) -> float:
    start, batch = time.perf_counter(), 5000
    while store.count() < target:
        n = min(batch, target - store.count())
        texts = sentences(rng, words, n, 6, 30)
        with transaction(store.conn):
            store.add([NewMemory("chunk", t, "user") for t in texts], conversation_id=None, source_message_id=None,
                      vectors=unit(rng, n, dim), embedder=EMBEDDER)
    return time.perf_counter() - start


def timed(fn, repeats: int) -> dict:
    """Wall and CPU milliseconds per call: on a shared machine the CPU time is what the search
    itself costs, the wall time adds waiting for a core."""
    wall, cpu = [], []
    for _ in range(repeats):
        start, start_cpu = time.perf_counter(), time.process_time()
        fn()
        wall.append((time.perf_counter() - start) * 1000)
        cpu.append((time.process_time() - start_cpu) * 1000)
    wall.sort()
    return {"p50_ms": statistics.median(wall), "p95_ms": wall[int(0.95 * (len(wall) - 1))],
            "cpu_p50_ms": statistics.median(cpu)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument("--dim", type=int, default=64, help="embedding dimension (the model's n_embd)")
    parser.add_argument("--queries", type=int, default=50)
    parser.add_argument("--k", type=int, default=6)
    parser.add_argument("--keep", type=Path, help="keep the filled databases in this folder, to reuse next run")
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    words = vocabulary(rng)
    with tempfile.TemporaryDirectory() as scratch:
        folder = args.keep or Path(scratch)
        folder.mkdir(parents=True, exist_ok=True)
        print(f"# {platform.processor() or platform.machine()}, dim {args.dim}, {args.queries} queries, k {args.k}")
        print("| memories | fill s | hybrid p50 ms | hybrid p95 ms | hybrid CPU p50 ms | BM25 only p50 ms | "
              "cosine only p50 ms |")
        print("|---|---|---|---|---|---|---|")
        for size in sorted(args.sizes):
            conn = connect(folder / f"memories-{args.dim}d-{size}.db")
            store = MemoryStore(conn)
            fill_seconds = fill(store, rng, words, size, args.dim)
            queries = sentences(rng, words, args.queries, 3, 8)
            vectors = unit(rng, args.queries, args.dim)
            it = iter(range(10**9))

            # The three closures are timed within this iteration, so the loop variables they read are current.
            def hybrid() -> None:
                i = next(it) % args.queries  # noqa: B023
                store.search(queries[i], vectors[i], EMBEDDER, k=args.k)  # noqa: B023

            def text_only() -> None:
                i = next(it) % args.queries  # noqa: B023
                store.search(queries[i], None, None, k=args.k)  # noqa: B023

            def vector_only() -> None:
                i = next(it) % args.queries  # noqa: B023
                store.search("", vectors[i], EMBEDDER, k=args.k)  # noqa: B023

            hybrid()  # warm the page cache
            h, t, v = timed(hybrid, args.queries), timed(text_only, args.queries), timed(vector_only, args.queries)
            print(f"| {size:,} | {fill_seconds:.1f} | {h['p50_ms']:.1f} | {h['p95_ms']:.1f} | {h['cpu_p50_ms']:.1f} | "
                  f"{t['p50_ms']:.1f} | {v['p50_ms']:.1f} |", flush=True)
            conn.close()


if __name__ == "__main__":
    main()
