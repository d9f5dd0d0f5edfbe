"""Dedup throughput (documents/s) of `quark data dedup` on the built-in corpus: MinHash vs SimHash,
local executor vs Ray, end to end (re-staging the rows, exact dedup, near-duplicate stages, write).

    .venv/bin/python benchmarks/dedup.py [--limit 300] [--workers 2] [--executors local ray]

The stdlib is ingested once with --dedup none (not timed) into a scratch home, then each method
runs on each executor. Ray is started once before its runs, as a cluster would be, so its start-up
is not counted; each stage still pays Ray's per-task scheduling. Nothing is kept afterwards.
"""

from __future__ import annotations

import argparse
import tempfile
import time

from quark.data.executors import RAY_RUNTIME_ENV, ExecutorOptions
from quark.data.ingest import ingest
from quark.data.refine import dedup
from quark.home import Home


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--limit", type=int, default=300, help="stdlib files (and doc topics) to ingest")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--executors", nargs="+", choices=["local", "ray"], default=["local", "ray"])
    parser.add_argument("--methods", nargs="+", choices=["minhash", "simhash", "exact"],
                        default=["minhash", "simhash"])
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as root:
        home = Home.open(root)
        ingest(home, [], builtin="stdlib", limit=args.limit, dedup="none",
               options=ExecutorOptions(workers=args.workers))
        print(f"{'executor':>8} {'method':>8} {'docs':>6} {'near dups':>9} {'exact':>6} {'seconds':>8} {'docs/s':>8}")
        baseline: dict[str, float] = {}
        for executor in args.executors:
            if executor == "ray":
                import ray

                # a private session folder and loopback: other Ray instances on a shared machine stay apart
                ray.init(num_cpus=args.workers, include_dashboard=False, log_to_driver=False,
                         _node_ip_address="127.0.0.1", _temp_dir=tempfile.mkdtemp(prefix="ray-", dir="/tmp"),
                         configure_logging=False, runtime_env=RAY_RUNTIME_ENV)
            try:
                for method in args.methods:
                    started = time.perf_counter()
                    result = dedup(home, "stdlib-code", method=method, name=f"bench-{executor}-{method}",
                                   options=ExecutorOptions(kind=executor, workers=args.workers))
                    seconds = time.perf_counter() - started
                    rate = result["input_docs"] / seconds
                    baseline.setdefault(executor, rate)
                    near, exact = (result["dropped"].get(reason, 0) for reason in ("near_duplicate", "exact_duplicate"))
                    print(f"{executor:>8} {method:>8} {result['input_docs']:>6} {near:>9} {exact:>6} "
                          f"{seconds:>8.1f} {rate:>8.1f}  ({rate / baseline[executor]:.2f}x {args.methods[0]})")
            finally:
                if executor == "ray":
                    ray.shutdown()


if __name__ == "__main__":
    main()
