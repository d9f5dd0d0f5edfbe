"""The page cache: fetched bodies in quark.db (`fetch_cache`), keyed by the requested URL.

A cached page is never served blind: when it has an ETag or Last-Modified, the next fetch asks the
server with If-None-Match / If-Modified-Since and a 304 reuses the stored body; without either it
is fetched again. Only successful (200) pages are kept.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from quark.db import transaction


@dataclass(frozen=True)
class CachedPage:
    url: str
    final_url: str
    content_type: str
    charset: str
    etag: str | None
    last_modified: str | None
    body: bytes
    fetched_at: float

    def validators(self) -> dict[str, str]:
        """Conditional-request headers; empty when the page cannot be revalidated."""
        headers = {}
        if self.etag:
            headers["If-None-Match"] = self.etag
        if self.last_modified:
            headers["If-Modified-Since"] = self.last_modified
        return headers


def get(conn, url: str) -> CachedPage | None:
    row = conn.execute("SELECT url, final_url, content_type, charset, etag, last_modified, body, fetched_at "
                       "FROM fetch_cache WHERE url = ?", (url,)).fetchone()
    return CachedPage(*row[:6], bytes(row[6]), row[7]) if row else None


def put(conn, page: CachedPage) -> None:
    with transaction(conn):
        conn.execute(
            "INSERT INTO fetch_cache(url, final_url, content_type, charset, etag, last_modified, body, fetched_at, "
            "validated_at) VALUES (?,?,?,?,?,?,?,?,?) ON CONFLICT(url) DO UPDATE SET final_url=excluded.final_url, "
            "content_type=excluded.content_type, charset=excluded.charset, etag=excluded.etag, "
            "last_modified=excluded.last_modified, body=excluded.body, fetched_at=excluded.fetched_at, "
            "validated_at=excluded.validated_at",
            (page.url, page.final_url, page.content_type, page.charset, page.etag, page.last_modified, page.body,
             page.fetched_at, time.time()))


def touch(conn, url: str) -> None:
    """Record a successful revalidation (304)."""
    with transaction(conn):
        conn.execute("UPDATE fetch_cache SET validated_at = ? WHERE url = ?", (time.time(), url))
