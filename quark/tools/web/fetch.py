"""One fetch as `fetch_url` runs it: guard, robots.txt, cache revalidation, caps, text.

`Fetcher` holds what lasts across fetches (robots.txt per origin, the HTTP client); `fetch(url)`
returns a `Page` or raises a ToolError/Refused whose message is the reason.
"""

from __future__ import annotations

import functools
import ssl
import time
from collections.abc import Callable
from contextlib import AbstractContextManager as ContextManager
from dataclasses import dataclass

import certifi
import httpx

from quark.tools.errors import ToolError
from quark.tools.settings import FetchSettings
from quark.tools.web import cache
from quark.tools.web.addresses import Resolver
from quark.tools.web.client import Guard, Response, guarded_get
from quark.tools.web.robots import Robots
from quark.tools.web.text import page_text


@dataclass(frozen=True)
class Page:
    url: str
    final_url: str
    status: int
    content_type: str
    title: str | None
    text: str
    from_cache: bool  # the body came from the cache (the server answered 304)
    bytes: int
    hops: int


def _verify(settings: FetchSettings) -> ssl.SSLContext:
    """Certificates are always verified (against the URL's name, sent as SNI); `ca_bundle` only
    changes which authorities are trusted (default: certifi's, as httpx uses)."""
    try:
        return _ssl_context(settings.ca_bundle or certifi.where())
    except (OSError, ssl.SSLError) as exc:
        raise ToolError(f"tools.fetch_url.ca_bundle {settings.ca_bundle}: {exc}") from None


@functools.lru_cache(maxsize=4)
def _ssl_context(cafile: str) -> ssl.SSLContext:
    """One context per CA file per process: loading a CA bundle takes ~0.2 s, more than a fetch."""
    return ssl.create_default_context(cafile=cafile)


class Fetcher:
    def __init__(self, settings: FetchSettings, *, resolver: Resolver | None = None,
                 db: Callable[[], ContextManager] | None = None, respect_robots: bool | None = None) -> None:
        """db: a context-manager factory yielding the quark.db connection (the cache); None: no cache."""
        self.settings = settings
        self.guard = Guard(resolver=resolver, allow_loopback=settings.allow_loopback,
                           allow_domains=tuple(settings.allow_domains), deny_domains=tuple(settings.deny_domains))
        self.db = db if settings.cache else None
        self.client = httpx.Client(trust_env=False, follow_redirects=False, verify=_verify(settings),
                                   timeout=httpx.Timeout(settings.timeout_s))
        follow = settings.respect_robots if respect_robots is None else respect_robots
        self.robots = Robots(settings.user_agent, self._get_plain) if follow else None

    def close(self) -> None:
        self.client.close()

    def _headers(self, extra: dict[str, str] | None = None) -> dict[str, str]:
        accept = ", ".join(self.settings.content_types) + ";q=0.9, */*;q=0.1"
        return {"User-Agent": self.settings.user_agent, "Accept": accept, **(extra or {})}

    def _get_plain(self, url: str) -> Response:
        return guarded_get(url, self.guard, headers=self._headers(), max_bytes=min(self.settings.max_bytes, 500_000),
                           timeout_s=self.settings.timeout_s, max_redirects=self.settings.max_redirects,
                           client=self.client)

    def _accept(self, response: httpx.Response) -> None:
        if response.status_code != 200:
            return
        kind = response.headers.get("content-type", "").split(";", 1)[0].strip().lower()
        if kind not in self.settings.content_types:
            raise ToolError(f"content type {kind or '(none)'!r} of {response.url} is not fetched "
                            f"(allowed: {', '.join(self.settings.content_types)})")

    def fetch(self, url: str) -> Page:
        cached = self._cache_get(url)
        response = guarded_get(url, self.guard, headers=self._headers(cached.validators() if cached else None),
                               max_bytes=self.settings.max_bytes, timeout_s=self.settings.timeout_s,
                               max_redirects=self.settings.max_redirects,
                               before_hop=self.robots.check if self.robots else None, accept=self._accept,
                               client=self.client)
        if response.status == 304 and cached is not None:
            self._cache(cache.touch, url)
            content_type, charset, body, final = cached.content_type, cached.charset, cached.body, cached.final_url
        elif response.status == 200:
            content_type, charset, body, final = response.content_type, response.charset, response.body, response.url
            self._cache(cache.put, cache.CachedPage(
                url=url, final_url=final, content_type=content_type, charset=charset,
                etag=response.headers.get("etag"), last_modified=response.headers.get("last-modified"),
                body=body, fetched_at=time.time()))
        else:
            raise ToolError(f"{response.url} answered HTTP {response.status}")
        try:
            decoded = body.decode(charset, errors="replace")
        except LookupError:
            decoded = body.decode("utf-8", errors="replace")
        title, text = page_text(decoded, content_type, final)
        return Page(url=url, final_url=final, status=response.status, content_type=content_type, title=title,
                    text=text, from_cache=response.status == 304, bytes=len(body), hops=len(response.hops))

    def _cache_get(self, url: str) -> cache.CachedPage | None:
        if self.db is None:
            return None
        with self.db() as conn:
            return cache.get(conn, url)

    def _cache(self, write, *args) -> None:
        if self.db is not None:
            with self.db() as conn:
                write(conn, *args)
