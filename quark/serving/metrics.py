"""Prometheus metrics of a running server (prometheus_client, one registry per app).

Latency is measured by an ASGI middleware from the request's arrival to the last byte of its
response, so a streamed completion counts its whole stream, not just the headers.
"""

from __future__ import annotations

import time

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from quark.inference.prefix_cache import PrefixCache
from quark.serving.batcher import BatchStats

LATENCY_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64)


class PrefixCacheCollector:
    """The engine's prefix cache as Prometheus series, read from its counters at each scrape."""

    def __init__(self, cache: PrefixCache) -> None:
        self.cache = cache

    def collect(self):
        stats = self.cache.stats
        for name, doc, value in (("lookups", "Prompts looked up in the prefix cache.", stats.lookups),
                                 ("hits", "Prompts that reused a cached prefix.", stats.hits),
                                 ("tokens_saved", "Prompt tokens not prefilled thanks to the cache.",
                                  stats.tokens_saved),
                                 ("evictions", "Blocks evicted to stay under the budget.", stats.evictions)):
            yield CounterMetricFamily(f"quark_prefix_cache_{name}", doc, value=value)
        yield GaugeMetricFamily("quark_prefix_cache_bytes", "Memory held by cached KV blocks.", value=self.cache.nbytes)
        yield GaugeMetricFamily("quark_prefix_cache_budget_bytes", "The cache's memory budget.",
                                value=self.cache.budget_bytes)
        yield GaugeMetricFamily("quark_prefix_cache_blocks", "KV blocks held.", value=self.cache.blocks)


class Metrics:
    content_type = CONTENT_TYPE_LATEST

    def __init__(self, prefix_cache: PrefixCache | None = None) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        if prefix_cache is not None:
            r.register(PrefixCacheCollector(prefix_cache))
        self.requests = Counter("quark_requests", "HTTP requests answered, by route and status.",
                                ["endpoint", "status"], registry=r)
        self.latency = Histogram("quark_request_latency_seconds", "Arrival to last byte, by route.",
                                 ["endpoint"], buckets=LATENCY_BUCKETS, registry=r)
        self.first_token = Histogram("quark_time_to_first_token_seconds",
                                     "Queueing plus prefill, per generation request.",
                                     buckets=LATENCY_BUCKETS, registry=r)
        self.prompt_tokens = Counter("quark_prompt_tokens", "Prompt tokens processed.", registry=r)
        self.completion_tokens = Counter("quark_completion_tokens", "Tokens generated.", registry=r)
        self.in_flight = Gauge("quark_generations_in_flight", "Generation requests being answered now.", registry=r)
        self.cancelled = Counter("quark_cancelled_streams", "Generations stopped because the client went away.",
                                 registry=r)
        self.queue_depth = Gauge("quark_queue_depth", "Generation requests waiting for the engine.", registry=r)
        self.batch_rows = Histogram("quark_batch_size", "Sequences sharing each engine step.", buckets=BATCH_BUCKETS,
                                    registry=r)
        self.batch_requests = Histogram("quark_batch_requests", "HTTP requests sharing each engine step.",
                                        buckets=BATCH_BUCKETS, registry=r)
        self.batch_adapters = Histogram("quark_batch_adapters", "Distinct adapters (the base counting as one) "
                                        "among the rows of each engine step.", buckets=BATCH_BUCKETS, registry=r)

    def batch_stats(self) -> BatchStats:
        def on_step(rows: int, jobs: int, adapters: int) -> None:
            self.batch_rows.observe(rows)
            self.batch_requests.observe(jobs)
            self.batch_adapters.observe(adapters)

        return BatchStats(on_step=on_step, on_queue=self.queue_depth.set)

    def render(self) -> bytes:
        return generate_latest(self.registry)


class MetricsMiddleware:
    """Pure ASGI middleware: counts every HTTP response and times it to its last body chunk."""

    def __init__(self, app, metrics: Metrics) -> None:
        self.app, self.metrics = app, metrics

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start, status = time.perf_counter(), {"code": 500}

        async def observe(message) -> None:
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
            await send(message)
            if message["type"] == "http.response.body" and not message.get("more_body", False):
                route = scope.get("route")
                endpoint = getattr(route, "path", "unmatched")
                self.metrics.requests.labels(endpoint, str(status["code"])).inc()
                self.metrics.latency.labels(endpoint).observe(time.perf_counter() - start)

        await self.app(scope, receive, observe)
