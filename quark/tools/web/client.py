"""HTTP GET through the SSRF guard: each hop checked, connected to the checked address.

httpx is told to connect to the address `addresses.check_url` approved (the URL's host replaced by
the IP) while the request keeps the real name in its Host header and, for https, in TLS SNI and
certificate verification (httpcore's `sni_hostname` request extension), so the name is never
resolved a second time. Redirects are followed here, not by httpx: every Location is checked as a
new URL (at most `max_redirects` hops). Bodies are streamed and cut off at `max_bytes` (counted
after decompression, so a compressed bomb stops too) and the whole fetch at `timeout_s`.
Proxies from the environment are ignored: a proxy would connect on our behalf, unchecked.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import httpx

from quark.tools.errors import ToolError
from quark.tools.web.addresses import Refused, Resolver, Target, check_url

REDIRECTS = (301, 302, 303, 307, 308)


@dataclass(frozen=True)
class Guard:
    """What every hop is checked against."""

    resolver: Resolver | None = None
    allow_loopback: bool = False
    allow_domains: tuple[str, ...] = ()
    deny_domains: tuple[str, ...] = ()

    def check(self, url: str | httpx.URL) -> Target:
        return check_url(url, resolver=self.resolver, allow_loopback=self.allow_loopback,
                         allow_domains=self.allow_domains, deny_domains=self.deny_domains)


@dataclass
class Response:
    url: str  # the final URL, after redirects
    status: int
    headers: httpx.Headers
    body: bytes
    hops: list[str] = field(default_factory=list)  # every URL requested, in order

    @property
    def content_type(self) -> str:
        return self.headers.get("content-type", "").split(";", 1)[0].strip().lower()

    @property
    def charset(self) -> str:
        for part in self.headers.get("content-type", "").split(";")[1:]:
            key, _, value = part.partition("=")
            if key.strip().lower() == "charset" and value.strip():
                return value.strip().strip('"')
        return "utf-8"

    def text(self) -> str:
        try:
            return self.body.decode(self.charset, errors="replace")
        except LookupError:
            return self.body.decode("utf-8", errors="replace")


def pinned_request(client: httpx.Client, target: Target, headers: Mapping[str, str]) -> httpx.Request:
    """A GET to `target.address` that presents itself as `target.host` (Host header and SNI)."""
    default_port = 443 if target.url.scheme == "https" else 80
    host_header = target.host if ":" not in target.host else f"[{target.host}]"
    if target.port != default_port:
        host_header += f":{target.port}"
    extensions = {"sni_hostname": target.host} if target.url.scheme == "https" else {}
    return client.build_request("GET", target.url.copy_with(host=str(target.address)),
                                headers={**headers, "Host": host_header}, extensions=extensions)


def guarded_get(url: str, guard: Guard, *, headers: Mapping[str, str] | None = None, max_bytes: int = 2_000_000,
                timeout_s: float = 15.0, max_redirects: int = 5,
                before_hop: Callable[[str], None] | None = None,
                accept: Callable[[httpx.Response], None] | None = None,
                client: httpx.Client | None = None) -> Response:
    """GET `url`, re-checking every redirect hop; raise `Refused` or `ToolError` with the reason.

    before_hop(url) runs before each request (robots.txt); accept(response) may refuse a final
    response from its headers before the body is read (the content-type allow list)."""
    deadline = time.monotonic() + timeout_s
    own = client is None
    client = client or httpx.Client(trust_env=False, follow_redirects=False, timeout=httpx.Timeout(timeout_s))
    hops: list[str] = []
    current = url
    try:
        while True:
            target = guard.check(current)
            if before_hop is not None:
                before_hop(str(target.url))
            hops.append(str(target.url))
            request = pinned_request(client, target, headers or {})
            try:
                response = client.send(request, stream=True)
            except httpx.ConnectTimeout:
                raise ToolError(f"timed out connecting to {target.host}") from None
            except httpx.TimeoutException:
                raise ToolError(f"timed out waiting for {target.host} to answer") from None
            except httpx.HTTPError as exc:
                raise ToolError(f"cannot fetch {target.url}: {type(exc).__name__}: {exc}") from None
            try:
                if response.status_code in REDIRECTS and "location" in response.headers:
                    if len(hops) > max_redirects:
                        raise Refused(f"too many redirects (more than {max_redirects}) from {url}")
                    current = str(target.url.join(response.headers["location"]))
                    continue
                if accept is not None:
                    accept(response)
                body = _read(response, max_bytes, deadline, str(target.url))
                return Response(url=str(target.url), status=response.status_code, headers=response.headers,
                                body=body, hops=hops)
            finally:
                response.close()
    finally:
        if own:
            client.close()


def _read(response: httpx.Response, max_bytes: int, deadline: float, url: str) -> bytes:
    data = bytearray()
    try:
        for chunk in response.iter_bytes():
            data += chunk
            if len(data) > max_bytes:
                raise ToolError(f"{url} is larger than the {max_bytes}-byte limit")
            if time.monotonic() > deadline:
                raise ToolError(f"fetching {url} took longer than the time limit")
    except httpx.TimeoutException:
        raise ToolError(f"timed out reading {url}") from None
    except httpx.HTTPError as exc:
        raise ToolError(f"error reading {url}: {type(exc).__name__}: {exc}") from None
    return bytes(data)
