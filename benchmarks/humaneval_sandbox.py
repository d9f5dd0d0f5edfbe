"""How long the sandboxed HumanEval harness takes: all 164 canonical solutions, by worker count.

Run: .venv/bin/python benchmarks/humaneval_sandbox.py [--workers 2 4 8] [--backend bubblewrap]
Prints, per worker count, the wall time, programs per second and pass@1 (which must be 1.0).
"""

from __future__ import annotations

import argparse
import os
import time

from quark.evaluation import code_execution, humaneval
from quark.sandbox import Limits, open_sandbox


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2, 4, 8])
    parser.add_argument("--backend", default="auto")
    args = parser.parse_args()
    problems = humaneval.load_problems()
    sandbox = open_sandbox(args.backend, limits=Limits(timeout_s=10, memory_mb=1024))
    print(f"{len(problems)} problems, backend {sandbox.name}, {os.cpu_count()} cores")
    for workers in args.workers:
        start = time.perf_counter()
        metrics = code_execution.score(code_execution.execute(problems, code_execution.references(problems),
                                                              sandbox=sandbox, workers=workers))
        elapsed = time.perf_counter() - start
        print(f"workers {workers:2d}: {elapsed:6.1f} s  {len(problems) / elapsed:5.1f} programs/s  "
              f"pass@1 {metrics['pass@1']:.3f}")


if __name__ == "__main__":
    main()
