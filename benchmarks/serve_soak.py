"""Serve under load: N clients x M requests against a real `quark serve` on 127.0.0.1.

Each client cycles through four kinds of request: a plain chat completion, a streamed one, a
streamed one it hangs up on after the first chunk (a cancellation the server must clean up
after), and a plain text completion. Reported: errors (any non-200 answer, broken stream or
transport error), p50/p95/p99 latency per kind (whole request; to the first chunk for the
cancelled ones), and the server's resident memory (VmRSS) after a warm-up and at the end. The
aim: 0 errors and RSS growth under 5% over 1,000 requests. Bounded: every request asks for at
most --max-tokens tokens, and everything is loopback.

    python benchmarks/serve_soak.py                         # 8 clients x 125 requests = 1,000
    python benchmarks/serve_soak.py --clients 4 --requests 8 --json    # what the test suite runs
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
from _common import save_preset_model, served

KINDS = ("chat", "stream", "cancel", "completion")


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError("no VmRSS")


def one(client: httpx.Client, base: str, kind: str, i: int, max_tokens: int) -> float:
    """Seconds the request took; raises on any error."""
    messages = [{"role": "user", "content": f"request {i}: write a function"}]
    start = time.perf_counter()
    if kind == "completion":
        r = client.post(f"{base}/v1/completions", json={"model": "bench", "prompt": f"def f{i}(",
                                                          "max_tokens": max_tokens, "seed": i})
        r.raise_for_status()
        assert r.json()["choices"][0]["text"] is not None
        return time.perf_counter() - start
    if kind == "chat":
        r = client.post(f"{base}/v1/chat/completions", json={"model": "bench", "messages": messages,
                                                               "max_tokens": max_tokens, "seed": i})
        r.raise_for_status()
        assert r.json()["choices"][0]["message"]["role"] == "assistant"
        return time.perf_counter() - start
    body = {"model": "bench", "messages": messages, "max_tokens": max_tokens, "seed": i, "stream": True}
    done = False
    with client.stream("POST", f"{base}/v1/chat/completions", json=body) as response:
        response.raise_for_status()
        for line in response.iter_lines():
            if line.startswith("data: ") and kind == "cancel":
                return time.perf_counter() - start  # leaving the block closes the connection mid-stream
            if line == "data: [DONE]":
                done = True
    if not done:
        raise RuntimeError("stream ended without [DONE]")
    return time.perf_counter() - start


def client_loop(base: str, client_id: int, requests: int, max_tokens: int) -> list[tuple[str, float | None, str]]:
    out = []
    with httpx.Client(timeout=120) as client:
        for n in range(requests):
            kind = KINDS[(client_id + n) % len(KINDS)]
            try:
                out.append((kind, one(client, base, kind, client_id * 10_000 + n, max_tokens), ""))
            except Exception as exc:  # counted, not raised: the soak reports every error
                out.append((kind, None, f"{type(exc).__name__}: {exc}"))
    return out


def percentile(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, round(q / 100 * (len(values) - 1)))]


def soak(base: str, pid: int, clients: int, requests: int, max_tokens: int) -> dict:
    warm = client_loop(base, 0, 2 * len(KINDS), max_tokens)  # first allocations, caches, compiled paths
    rss_start = rss_kib(pid)
    start = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        results = [r for batch in pool.map(lambda c: client_loop(base, c, requests, max_tokens), range(clients))
                   for r in batch]
    wall = time.perf_counter() - start
    rss_end = rss_kib(pid)
    health = httpx.get(f"{base}/health", timeout=30).status_code
    latency = {}
    for kind in KINDS:
        times = [t for k, t, _ in results if k == kind and t is not None]
        if times:
            latency[kind] = {"n": len(times), "p50_s": percentile(times, 50), "p95_s": percentile(times, 95),
                             "p99_s": percentile(times, 99)}
    every = [t for _, t, _ in results if t is not None]
    errors = [e for _, _, e in results if e] + [e for _, _, e in warm if e]
    return {"requests": len(results), "clients": clients, "max_tokens": max_tokens, "errors": len(errors),
            "first_errors": errors[:5], "seconds": round(wall, 2), "requests_per_s": round(len(results) / wall, 2),
            "p50_s": percentile(every, 50), "p95_s": percentile(every, 95), "p99_s": percentile(every, 99),
            "latency": latency, "rss_start_mib": round(rss_start / 1024, 1), "rss_end_mib": round(rss_end / 1024, 1),
            "rss_growth_pct": round(100 * (rss_end - rss_start) / rss_start, 2), "health_after": health}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", default="tiny")
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--requests", type=int, default=125, help="requests per client")
    parser.add_argument("--max-tokens", type=int, default=16)
    parser.add_argument("--json", action="store_true", help="print the figures as one JSON document")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as home:
        save_preset_model(Path(home), args.preset)
        with served(Path(home), max_batch=args.clients) as (base, pid):
            result = soak(base, pid, args.clients, args.requests, args.max_tokens)
    if args.json:
        print(json.dumps(result, indent=2))
        return
    print(f"preset {args.preset}: {args.clients} clients x {args.requests} requests, <= {args.max_tokens} tokens "
          "each\n")
    print("| kind | requests | p50 s | p95 s | p99 s |\n|---|---|---|---|---|")
    for kind, row in result["latency"].items():
        print(f"| {kind} | {row['n']} | {row['p50_s']:.3f} | {row['p95_s']:.3f} | {row['p99_s']:.3f} |")
    print(f"| all | {result['requests']} | {result['p50_s']:.3f} | {result['p95_s']:.3f} | {result['p99_s']:.3f} |")
    print(f"\nerrors: {result['errors']} {result['first_errors'] or ''}; {result['requests_per_s']} requests/s; "
          f"server RSS {result['rss_start_mib']} -> {result['rss_end_mib']} MiB ({result['rss_growth_pct']:+.2f}%)")


if __name__ == "__main__":
    main()
