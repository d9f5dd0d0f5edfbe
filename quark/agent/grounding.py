"""Grounding a turn in what it has seen: fetches go to URLs the turn was shown, and the pages
fetched are cited.

URLs: once the user's message or a tool result of this turn names http(s) URLs, fetch_url's
`url` argument is constrained (in the grammar) to one of them, so a small model fetches a search
result instead of a URL it made up (and a page's text cannot steer it to an address nobody showed
it, beyond the links that page itself carries). With no URL seen, the argument is free.

Citations: the mechanism is deterministic, not left to the model: when a turn's successful fetch_url calls
read pages, the loop appends a "Sources:" block to the final answer naming each page's title and
final URL, numbered in fetch order, unless the answer already cites every one of them. A small
model's answer may be weak, but the user always sees which fetched text it was given.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Sequence
from typing import Any

from quark.agent.events import ToolCallFinished

_URL = re.compile(r"https?://[^\s\"'<>\\)\]]+")

SOURCES_HEADER = "Sources:"


def fetched_pages(calls: Sequence[ToolCallFinished]) -> list[tuple[str, str]]:
    """(title, url) of each distinct page the turn fetched successfully, in order."""
    pages: dict[str, str] = {}
    for call in calls:
        if call.name == "fetch_url" and call.result.ok and call.result.output:
            url = call.result.output.get("final_url") or call.result.output.get("url")
            if url and url not in pages:
                pages[url] = call.result.output.get("title") or url
    return [(title, url) for url, title in pages.items()]


def sources_block(reply: str, calls: Sequence[ToolCallFinished]) -> str:
    """The text to append to `reply` so it cites the fetched pages ("" when nothing to add)."""
    pages = [(title, url) for title, url in fetched_pages(calls) if url not in reply]
    if not pages:
        return ""
    lines = [f"[{i}] {title} — {url}" for i, (title, url) in enumerate(pages, 1)]
    return ("\n\n" if reply.strip() else "") + "\n".join([SOURCES_HEADER, *lines])


def seen_urls(messages: Sequence[dict[str, Any]]) -> list[str]:
    """The http(s) URLs in user messages and tool results, in order of appearance, once each."""
    urls: dict[str, None] = {}
    for message in messages:
        if message.get("role") in ("user", "tool"):
            for url in _URL.findall(str(message.get("content") or "")):
                urls.setdefault(url.rstrip(".,;:"), None)
    return list(urls)


def grounded_tools(tools: Sequence[dict[str, Any]], urls: Sequence[str]) -> list[dict[str, Any]]:
    """`tools` with fetch_url's `url` held to `urls` (unchanged when there are none)."""
    if not urls:
        return list(tools)
    out = []
    for tool in tools:
        if tool.get("function", {}).get("name") == "fetch_url":
            tool = copy.deepcopy(tool)
            properties = tool["function"]["parameters"].setdefault("properties", {})
            properties["url"] = {**{k: v for k, v in properties.get("url", {}).items()
                                    if k in ("description", "title")}, "enum": list(urls)}
        out.append(tool)
    return out
