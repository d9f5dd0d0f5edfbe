"""A small HTTP server on 127.0.0.1 for tool tests: routes are set per test, requests are recorded."""

from __future__ import annotations

import json
import ssl
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit


@dataclass
class Request:
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]


Handler = Callable[[Request], tuple[int, dict[str, str], bytes]]


@dataclass
class Site:
    routes: dict[str, Handler] = field(default_factory=dict)
    requests: list[Request] = field(default_factory=list)
    port: int = 0

    def url(self, path: str = "/") -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def page(self, path: str, body: str | bytes, content_type: str = "text/html; charset=utf-8", status: int = 200,
             headers: dict[str, str] | None = None) -> None:
        data = body.encode() if isinstance(body, str) else body
        self.routes[path] = lambda request: (status, {"Content-Type": content_type, **(headers or {})}, data)

    def json(self, path: str, make: Callable[[Request], object]) -> None:
        self.routes[path] = lambda request: (200, {"Content-Type": "application/json"},
                                             json.dumps(make(request)).encode())

    def redirect(self, path: str, location: str, status: int = 302) -> None:
        self.routes[path] = lambda request: (status, {"Location": location}, b"")

    def paths(self) -> list[str]:
        return [r.path for r in self.requests]


def serve(site: Site, tls: ssl.SSLContext | None = None) -> ThreadingHTTPServer:
    """Start serving `site` on 127.0.0.1 (https when given a server-side `tls` context)."""
    class _Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            parts = urlsplit(self.path)
            request = Request(parts.path, parse_qs(parts.query), {k.lower(): v for k, v in self.headers.items()})
            site.requests.append(request)
            handler = site.routes.get(parts.path)
            status, headers, body = handler(request) if handler else (404, {"Content-Type": "text/plain"}, b"not found")
            try:
                self.send_response(status)
                for key, value in headers.items():
                    self.send_header(key, value)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)
            except (BrokenPipeError, ConnectionResetError):  # the client gave up (a size or time cap)
                pass

        def log_message(self, *args) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    if tls is not None:
        server.socket = tls.wrap_socket(server.socket, server_side=True)
    site.port = server.server_address[1]
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server
