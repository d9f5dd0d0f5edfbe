"""Throughput of `quark data ingest` on the built-in corpus (the stdlib), per executor and worker count.

    .venv/bin/python benchmarks/data_ingest.py --workers 1 2 [--executor ray] [--limit 200]

Prints documents kept, megabytes read and seconds for each setting; nothing is kept afterwards.
"""

from __future__ import annotations

import argparse
import tempfile
import time

from quark.data.executors import ExecutorOptions
from quark.data.ingest import ingest
from quark.home import Home


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--executor", choices=["local", "ray"], default="local")
    parser.add_argument("--limit", type=int, default=None, help="stdlib files (and doc topics) to read")
    args = parser.parse_args()
    print(f"{'executor':>8} {'workers':>7} {'docs':>6} {'MB kept':>8} {'seconds':>8} {'MB/s':>6}")
    for workers in args.workers:
        with tempfile.TemporaryDirectory() as home:
            started = time.perf_counter()
            result = ingest(Home.open(home), [], builtin="stdlib", limit=args.limit,
                            options=ExecutorOptions(kind=args.executor, workers=workers))
            seconds = time.perf_counter() - started
        docs = sum(entry["docs"] for entry in result["datasets"])
        megabytes = sum(entry["chars"] for entry in result["datasets"]) / 1e6
        print(f"{args.executor:>8} {workers:>7} {docs:>6} {megabytes:>8.1f} {seconds:>8.1f} "
              f"{megabytes / seconds:>6.2f}")


if __name__ == "__main__":
    main()
