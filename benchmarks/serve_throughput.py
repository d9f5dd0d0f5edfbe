"""Serving throughput: 16 concurrent streamed chat requests against the same 16 one at a time,
on a real `quark serve` subprocess bound to 127.0.0.1 (random weights of a preset's shape).

Concurrent requests should be batched by the engine, so their total tokens/s should beat the
sequential run by a wide margin while each request still streams. Loopback only; bounded work.

    python benchmarks/serve_throughput.py                 # tiny preset, 16 requests x 64 tokens
    python benchmarks/serve_throughput.py --max-tokens 32 --threads 2
"""

from __future__ import annotations

import argparse
import json
import re
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
from _common import save_preset_model, served


def stream_one(client: httpx.Client, base: str, i: int, max_tokens: int) -> tuple[int, float]:
    """(completion tokens, seconds to the first content chunk) of one streamed chat request."""
    body = {"model": "bench", "messages": [{"role": "user", "content": f"request number {i}"}],
            "max_tokens": max_tokens, "temperature": 0.8, "seed": i, "stream": True,
            "stream_options": {"include_usage": True}}
    start, first, tokens = time.perf_counter(), None, 0
    with client.stream("POST", f"{base}/v1/chat/completions", json=body, timeout=600) as response:
        response.raise_for_status()
        for line in response.iter_lines():
            if not line.startswith("data: ") or line == "data: [DONE]":
                continue
            chunk = json.loads(line[6:])
            if first is None and chunk["choices"] and chunk["choices"][0]["delta"].get("content"):
                first = time.perf_counter() - start
            if chunk.get("usage"):
                tokens = chunk["usage"]["completion_tokens"]
    return tokens, first if first is not None else time.perf_counter() - start


def steps(client: httpx.Client, base: str) -> tuple[float, float]:
    """(engine steps so far, sequences summed over those steps), from /metrics."""
    text = client.get(f"{base}/metrics").text
    return tuple(float(re.search(rf"^quark_batch_size_{part} (\S+)$", text, re.M).group(1)) for part in ("count",
                                                                                                         "sum"))


def run(client: httpx.Client, base: str, requests: int, max_tokens: int, concurrent: bool) -> dict:
    start = time.perf_counter()
    if concurrent:
        with ThreadPoolExecutor(requests) as pool:
            results = list(pool.map(lambda i: stream_one(client, base, i, max_tokens), range(requests)))
    else:
        results = [stream_one(client, base, i, max_tokens) for i in range(requests)]
    wall = time.perf_counter() - start
    tokens = sum(t for t, _ in results)
    return {"tokens": tokens, "seconds": wall, "tokens_per_s": tokens / wall,
            "mean_first_token_s": sum(f for _, f in results) / len(results)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", default="tiny")
    parser.add_argument("--requests", type=int, default=16)
    parser.add_argument("--max-tokens", type=int, default=64)
    parser.add_argument("--threads", type=int, default=1, help="torch threads in the server (OMP_NUM_THREADS)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as home:
        save_preset_model(Path(home), args.preset)
        with served(Path(home), max_batch=args.requests, threads=args.threads) as (base, _):
            # One pooled client for every request: a client per request would spend its time
            # building TLS contexts, not waiting for the server.
            with httpx.Client(limits=httpx.Limits(max_connections=args.requests)) as client:
                stream_one(client, base, -1, 4)  # warm up
                before = steps(client, base)
                sequential = run(client, base, args.requests, args.max_tokens, concurrent=False)
                middle = steps(client, base)
                concurrent = run(client, base, args.requests, args.max_tokens, concurrent=True)
                after = steps(client, base)
    print(f"preset {args.preset}, {args.requests} requests x {args.max_tokens} tokens, server torch threads "
          f"{args.threads}\n")
    print("| mode | tokens | seconds | tokens/s | mean time to first token s | sequences per engine step |")
    print("|---|---|---|---|---|---|")
    for name, r, (a, b) in (("one at a time", sequential, (before, middle)),
                            (f"{args.requests} concurrent", concurrent, (middle, after))):
        rows_per_step = (b[1] - a[1]) / (b[0] - a[0])
        print(f"| {name} | {r['tokens']} | {r['seconds']:.2f} | {r['tokens_per_s']:.1f} | "
              f"{r['mean_first_token_s']:.3f} "
              f"| {rows_per_step:.1f} |")
    print(f"\nconcurrent/sequential throughput: {concurrent['tokens_per_s'] / sequential['tokens_per_s']:.2f}x")


if __name__ == "__main__":
    main()
