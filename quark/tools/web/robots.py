"""robots.txt for fetches the model initiates, parsed by protego.

Each origin's robots.txt is fetched once per `Robots` object through the same guarded client (so
it obeys the SSRF guard too). A missing robots.txt (4xx) allows everything; a server error or an
unreachable robots.txt disallows, as Google's crawler does, so a site that is down is not crawled
by accident.
"""

from __future__ import annotations

from collections.abc import Callable

import httpx
from protego import Protego

from quark.tools.errors import ToolError
from quark.tools.web.addresses import Refused
from quark.tools.web.client import Response


class Robots:
    def __init__(self, user_agent: str, get: Callable[[str], Response]) -> None:
        self.user_agent = user_agent
        self._get = get
        self._rules: dict[str, Protego | str] = {}  # origin -> rules, or why they could not be read

    def check(self, url: str) -> None:
        """Raise Refused when robots.txt of `url`'s origin disallows it for our user agent."""
        parsed = httpx.URL(url)
        origin = f"{parsed.scheme}://{parsed.netloc.decode('ascii')}"
        if origin not in self._rules:
            self._rules[origin] = self._load(origin)
        rules = self._rules[origin]
        if isinstance(rules, str):
            raise Refused(f"robots.txt of {origin} could not be read ({rules}), so {url} is not fetched")
        if not rules.can_fetch(url, self.user_agent):
            raise Refused(f"robots.txt of {origin} disallows {url} for {self.user_agent.split('/')[0]}")

    def _load(self, origin: str) -> Protego | str:
        try:
            response = self._get(f"{origin}/robots.txt")
        except ToolError as exc:  # refused by the guard, unreachable, too large
            return str(exc)
        if 400 <= response.status < 500:
            return Protego.parse("")
        if response.status != 200:
            return f"HTTP {response.status}"
        return Protego.parse(response.text())
