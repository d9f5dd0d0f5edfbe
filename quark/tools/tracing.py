"""OpenTelemetry spans for agent turns and tool calls: off unless configured.

`[tracing] exporter = "console"` (or QUARK_TRACING=console) prints each finished span to stderr;
`"otlp"` sends them over OTLP/HTTP to `endpoint` (needs the optional
opentelemetry-exporter-otlp-proto-http package). Off, `span()` is a no-op tracer's span, so call
sites never check. Quark keeps its own TracerProvider instead of installing a global one, so it
never fights an application that embeds it and configures OpenTelemetry itself.
"""

from __future__ import annotations

import contextlib
import sys
import threading
from collections.abc import Iterator
from typing import Any

from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter, SimpleSpanProcessor, SpanExporter

from quark.errors import QuarkError
from quark.tools.settings import TracingSettings

_lock = threading.Lock()
_provider: TracerProvider | None = None
_configured: tuple | None = None
_NOOP = trace.NoOpTracer()


def configure(settings: TracingSettings | None, *, exporter: SpanExporter | None = None) -> None:
    """Set up (or switch off) the exporter; repeated calls with the same settings do nothing.
    `exporter` overrides the settings' choice (tests pass an in-memory one)."""
    global _provider, _configured
    key = (settings.exporter if settings else "none", settings.endpoint if settings else None, id(exporter))
    with _lock:
        if key == _configured:
            return
        if _provider is not None:
            _provider.shutdown()
            _provider = None
        _configured = key
        if exporter is None and (settings is None or settings.exporter == "none"):
            return
        provider = TracerProvider(resource=Resource.create({"service.name": "quark"}))
        if exporter is not None:
            provider.add_span_processor(SimpleSpanProcessor(exporter))
        elif settings.exporter == "console":
            provider.add_span_processor(SimpleSpanProcessor(ConsoleSpanExporter(out=sys.stderr)))
        else:
            provider.add_span_processor(BatchSpanProcessor(_otlp(settings.endpoint)))
        _provider = provider


def ensure_configured(settings: TracingSettings | None) -> None:
    """Configure from `settings` unless tracing was configured already in this process (the first
    configuration wins, so an embedding application's or a test's choice is kept)."""
    if _configured is None:
        configure(settings)


def _otlp(endpoint: str | None) -> SpanExporter:
    try:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    except ImportError:
        raise QuarkError("tracing exporter 'otlp' needs the OTLP exporter: "
                         "pip install opentelemetry-exporter-otlp-proto-http") from None
    return OTLPSpanExporter(endpoint=endpoint) if endpoint else OTLPSpanExporter()


def tracer() -> trace.Tracer:
    provider = _provider
    return provider.get_tracer("quark") if provider is not None else _NOOP


@contextlib.contextmanager
def span(name: str, **attributes: Any) -> Iterator[trace.Span]:
    """A span named `name` (e.g. "tool.fetch_url", "agent.model_call") with `attributes`."""
    clean = {k: v for k, v in attributes.items() if isinstance(v, (str, bool, int, float))}
    with tracer().start_as_current_span(name, attributes=clean) as current:
        yield current


def flush() -> None:
    if _provider is not None:
        _provider.force_flush()
