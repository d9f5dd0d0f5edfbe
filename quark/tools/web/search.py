"""Web search providers: SearXNG (a self-hosted metasearch, JSON API) and Brave Search.

Both return the same `SearchHit` (title, url, snippet). The provider and its URL or key come from
`[tools.web_search]` in config.toml or the environment (QUARK_SEARXNG_URL, BRAVE_API_KEY); with
neither, searching is a clear error saying how to set one up. The endpoint is the user's own
choice (often a SearXNG on localhost), so it is not put through the fetch guard.
"""

from __future__ import annotations

from dataclasses import dataclass

import httpx

from quark.tools.errors import ToolError
from quark.tools.settings import WebSearchSettings

BRAVE_URL = "https://api.search.brave.com/res/v1/web/search"
SETUP_HINT = ("no web search provider is set up: set [tools.web_search] url = \"http://your-searxng\" "
              "(or $QUARK_SEARXNG_URL) for SearXNG, or api_key (or $BRAVE_API_KEY) for Brave, in config.toml")


@dataclass(frozen=True)
class SearchHit:
    title: str
    url: str
    snippet: str


def provider(settings: WebSearchSettings) -> str:
    """Which provider the settings select: the one named, else whichever is configured."""
    chosen = settings.provider or ("searxng" if settings.url else "brave" if settings.api_key else None)
    if chosen is None:
        raise ToolError(SETUP_HINT)
    if chosen == "searxng" and not settings.url:
        raise ToolError("web search provider is searxng but no url is set ([tools.web_search] url or "
                        "$QUARK_SEARXNG_URL)")
    if chosen == "brave" and not settings.api_key:
        raise ToolError("web search provider is brave but no api_key is set ([tools.web_search] api_key or "
                        "$BRAVE_API_KEY)")
    return chosen


def search(query: str, settings: WebSearchSettings, *, limit: int | None = None) -> tuple[str, list[SearchHit]]:
    """(provider name, hits) for `query`."""
    name = provider(settings)
    limit = limit or settings.max_results
    with httpx.Client(trust_env=False, timeout=settings.timeout_s, follow_redirects=True) as client:
        try:
            hits = _searxng(client, settings, query) if name == "searxng" else _brave(client, settings, query, limit)
        except httpx.TimeoutException:
            raise ToolError(f"{name} search timed out after {settings.timeout_s:g}s") from None
        except httpx.HTTPError as exc:
            raise ToolError(f"{name} search failed: {type(exc).__name__}: {exc}") from None
        except ValueError as exc:
            raise ToolError(f"{name} search answered something that is not its JSON: {exc}") from None
    return name, hits[:limit]


def _checked(response: httpx.Response, name: str) -> dict:
    if response.status_code != 200:
        raise ToolError(f"{name} search answered HTTP {response.status_code}: {response.text[:200]}")
    data = response.json()
    if not isinstance(data, dict):
        raise ValueError("expected a JSON object")
    return data


def _searxng(client: httpx.Client, settings: WebSearchSettings, query: str) -> list[SearchHit]:
    url = settings.url.rstrip("/") + "/search"
    data = _checked(client.get(url, params={"q": query, "format": "json"}, headers={"Accept": "application/json"}),
                    "searxng")
    return [SearchHit(str(r.get("title", "")), str(r["url"]), str(r.get("content") or ""))
            for r in data.get("results", []) if isinstance(r, dict) and r.get("url")]


def _brave(client: httpx.Client, settings: WebSearchSettings, query: str, limit: int) -> list[SearchHit]:
    data = _checked(client.get(BRAVE_URL, params={"q": query, "count": limit},
                               headers={"Accept": "application/json", "X-Subscription-Token": settings.api_key}),
                    "brave")
    results = (data.get("web") or {}).get("results", [])
    return [SearchHit(str(r.get("title", "")), str(r["url"]), str(r.get("description") or ""))
            for r in results if isinstance(r, dict) and r.get("url")]
