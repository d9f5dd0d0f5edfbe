"""Document-index vector search at 10k, 100k and 1M chunks: exact (sqlite-vec) vs approximate (usearch HNSW).

Random unit vectors of dimension 128 stand in for chunk embeddings (the hard case for HNSW: no
cluster structure to exploit). For each size: fill a throwaway quark.db's `doc_vec_128` table as
the document index stores it, build the approximate index as `quark index add` does
(quark.retrieval.approximate: HNSW, recall-checked against the exact scan, beam widened to reach
0.95), then time QUERIES searches for the top 10 each way and measure the approximate index's
recall@10 against the exact answer on fresh random queries.

    .venv/bin/python benchmarks/vector_search.py                 # 10k, 100k, 1M
    .venv/bin/python benchmarks/vector_search.py --write         # also record in benchmarks/RESULTS.md
"""

from __future__ import annotations

import argparse
import os
import platform
import tempfile
import time
from pathlib import Path

import numpy as np
from _results import write_section  # benchmarks/_results.py

from quark.db import connect, transaction
from quark.retrieval.approximate import (
    CONNECTIVITY,
    EXPANSION_ADD,
    GRAPH_DTYPE,
    METRIC,
    RESCORE_FACTOR,
    ApproximateIndex,
)
from quark.retrieval.metrics import dense_rankings

SECTION = "## Document index: vector search"
DIM, QUERIES, RECALL_QUERIES = 128, 100, 100


def unit(rng: np.random.Generator, n: int) -> np.ndarray:
    v = rng.standard_normal((n, DIM), dtype=np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def percentile_ms(times: list[float], q: float) -> float:
    return float(np.percentile(times, q) * 1000)


def run(size: int, folder: Path, rng: np.random.Generator) -> dict:
    vectors = unit(rng, size)
    keys = np.arange(1, size + 1, dtype=np.uint64)
    conn = connect(folder / f"quark-{size}.db")
    conn.execute(f"CREATE VIRTUAL TABLE doc_vec_{DIM} USING vec0(embedding float[{DIM}] distance_metric=cosine, "
                 "index_id integer partition key)")
    started = time.perf_counter()
    for start in range(0, size, 50_000):
        with transaction(conn):
            conn.executemany(f"INSERT INTO doc_vec_{DIM}(rowid, embedding, index_id) VALUES (?,?,1)",
                             [(int(k), v.tobytes())
                              for k, v in zip(keys[start:start + 50_000], vectors[start:start + 50_000])])
    fill = time.perf_counter() - started
    started = time.perf_counter()
    approx = ApproximateIndex.build(folder / f"ann-{size}", keys, vectors, generation=1, embedder="bench")
    build = time.perf_counter() - started
    queries = unit(rng, QUERIES)
    exact_times, approx_times, exact_ids = [], [], []
    for q in queries:
        t = time.perf_counter()
        rows = conn.execute(f"SELECT rowid FROM doc_vec_{DIM} WHERE embedding MATCH ? AND k = 10 AND index_id = 1 "
                            "ORDER BY distance", (q.tobytes(),)).fetchall()
        exact_times.append(time.perf_counter() - t)
        exact_ids.append([r[0] for r in rows])
        t = time.perf_counter()
        approx.search(q, 10)
        approx_times.append(time.perf_counter() - t)
    reference = [[int(keys[i]) for i in row] for row in dense_rankings(queries, vectors, 10)]
    agree = np.mean([len(set(a) & set(b)) / 10 for a, b in zip(exact_ids, reference)])
    found = [approx.search(q, 10) for q in queries[:RECALL_QUERIES]]
    recall = float(np.mean([len(set(f) & set(e)) / 10 for f, e in zip(found, reference)]))
    conn.close()
    return {"size": size, "fill_s": fill, "build_s": build, "exact_p50": percentile_ms(exact_times, 50),
            "exact_p95": percentile_ms(exact_times, 95), "approx_p50": percentile_ms(approx_times, 50),
            "approx_p95": percentile_ms(approx_times, 95), "recall": recall,
            "build_recall": approx.record["recall_at_10"],
            "beam": approx.record["expansion_search"], "exact_check": float(agree)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    parser.add_argument("--write", action="store_true")
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    load_start = os.getloadavg()[0]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for size in args.sizes:
            row = run(size, Path(tmp), rng)
            print(row, flush=True)
            rows.append(row)
    command = f"python benchmarks/vector_search.py --sizes {' '.join(map(str, args.sizes))} --write"
    text = (f"{SECTION}\n\n`{command}` — 2026-12-02\n\n"
            f"Machine: 2-core CPU, shared ({platform.processor() or platform.machine()}, {os.cpu_count()} cores seen, "
            f"load average {load_start:.1f} at the start, {os.getloadavg()[0]:.1f} at the end). "
            f"Random unit vectors, dimension {DIM}; {QUERIES} random queries, top 10. "
            "Exact: sqlite-vec's brute-force scan of `doc_vec_128` (what `quark index search --exact` runs). "
            f"Approximate: usearch HNSW (connectivity {CONNECTIVITY}, expansion_add {EXPANSION_ADD}, metric {METRIC}, "
            f"{GRAPH_DTYPE} graph, {RESCORE_FACTOR}× the wanted candidates rescored on the full-precision vectors) as "
            "`quark index add` builds it above 20,000 chunks, with the search beam the build chose to reach "
            "recall 0.95 on 200 of its vectors held out of the graph until measured (the build recall column). "
            "Recall@10 is against the exact answer, on the timed queries.\n\n"
            "| chunks | exact p50 | exact p95 | approx p50 | approx p95 | approx recall@10 | build recall | beam "
            "| HNSW build "
            "| vec0 fill |\n"
            "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n"
            + "".join(f"| {r['size']:,} | {r['exact_p50']:.1f} ms | {r['exact_p95']:.1f} ms | "
                      f"{r['approx_p50']:.2f} ms | {r['approx_p95']:.2f} ms | {r['recall']:.3f} | "
                      f"{r['build_recall']:.3f} | {r['beam']} | "
                      f"{r['build_s']:.0f} s | {r['fill_s']:.0f} s |\n"
                      for r in rows))
    print(text)
    if args.write:
        write_section(SECTION, text)


if __name__ == "__main__":
    main()
