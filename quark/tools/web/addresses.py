"""The SSRF guard: which URLs may be fetched, decided before any connection is opened.

A URL passes only if its scheme is http(s), it carries no credentials, its host passes the
domain allow/deny lists, and *every* address the host resolves to (resolved once, through an
injectable resolver) is globally routable. Addresses are judged after unwrapping the forms that
smuggle an IPv4 address inside IPv6 (v4-mapped, v4-compatible, 6to4, NAT64, Teredo), and IPv4
literals are read the way inet_aton reads them (2130706433, 0x7f.1, 0177.0.0.1 are all
127.0.0.1), so a spelling cannot slip past the check. Each refusal is one line with one reason.
The caller then connects to the checked address itself (see `client`), so a second DNS answer
cannot differ from the one checked (DNS rebinding).
"""

from __future__ import annotations

import ipaddress
import socket
import urllib.parse
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import httpx

from quark.tools.errors import ToolError

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
# resolver(host, port) -> the addresses (as text) the host resolves to
Resolver = Callable[[str, int], Sequence[str]]

METADATA = {ipaddress.ip_address(a) for a in ("169.254.169.254", "fd00:ec2::254", "100.100.100.200", "168.63.129.16")}
_CGNAT = ipaddress.ip_network("100.64.0.0/10")
_BENCHMARK = ipaddress.ip_network("198.18.0.0/15")
_DOCUMENTATION = [ipaddress.ip_network(n) for n in
                  ("192.0.2.0/24", "198.51.100.0/24", "203.0.113.0/24", "2001:db8::/32", "3fff::/20")]
_NAT64 = ipaddress.ip_network("64:ff9b::/96")
_NAT64_LOCAL = ipaddress.ip_network("64:ff9b:1::/48")
_V4_COMPATIBLE = ipaddress.ip_network("::/96")
_V4_TRANSLATED = ipaddress.ip_network("::ffff:0:0:0/96")  # SIIT, RFC 2765


class Refused(ToolError):
    """A URL the guard will not fetch; the message is the one reason."""


@dataclass(frozen=True)
class Target:
    """A checked URL: connect to `address` (every one of `addresses` passed), send Host/SNI `host`."""

    url: httpx.URL
    host: str
    port: int
    addresses: tuple[IPAddress, ...]

    @property
    def address(self) -> IPAddress:
        return self.addresses[0]


def system_resolver(host: str, port: int) -> list[str]:
    """The machine's resolver (getaddrinfo), every address family."""
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(info[4][0] for info in infos))


def parse_ipv4(text: str) -> ipaddress.IPv4Address | None:
    """An IPv4 literal in any spelling inet_aton accepts (1 to 4 parts, each decimal, 0-octal or
    0x-hex, the last filling the remaining bytes); None when `text` is not one."""
    parts = text.split(".")
    if parts and parts[-1] == "":  # a trailing dot, as in a fully qualified name
        parts = parts[:-1]
    if not 1 <= len(parts) <= 4:
        return None
    values = []
    for part in parts:
        try:
            if part[:2].lower() == "0x":
                values.append(int(part[2:] or "0", 16))
            elif len(part) > 1 and part.startswith("0"):
                values.append(int(part, 8))
            else:
                values.append(int(part, 10) if part.isdigit() else -1)
        except ValueError:
            return None
        if values[-1] < 0:
            return None
    *head, last = values
    if any(v > 255 for v in head) or last >= 256 ** (5 - len(values)):
        raise Refused(f"{text!r} is not a valid IPv4 address (a part is out of range)")
    number = 0
    for v in head:
        number = number * 256 + v
    return ipaddress.IPv4Address(number * 256 ** (5 - len(values)) + last)


def parse_ip(host: str) -> IPAddress | None:
    """The address a URL host names literally (IPv6 without brackets, or IPv4 in any spelling)."""
    if ":" in host:
        if "%" in host:
            raise Refused(f"IPv6 address {host!r} carries a zone id (link-local scope)")
        try:
            return ipaddress.IPv6Address(host)
        except ValueError:
            raise Refused(f"{host!r} is not a valid IPv6 address") from None
    return parse_ipv4(host)


def unwrap(ip: IPAddress) -> IPAddress:
    """The IPv4 address an IPv6 form carries (v4-mapped, v4-translated, v4-compatible, 6to4, NAT64,
    Teredo client), or `ip` itself."""
    if isinstance(ip, ipaddress.IPv4Address):
        return ip
    if ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    if ip.sixtofour is not None:
        return ip.sixtofour
    if ip.teredo is not None:
        return ip.teredo[1]
    if ip in _NAT64 or ip in _V4_TRANSLATED or (ip in _V4_COMPATIBLE and int(ip) > 1):
        return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    return ip


def refusal(ip: IPAddress, *, allow_loopback: bool = False) -> str | None:
    """Why `ip` must not be fetched from (None: it is globally routable, or allowed loopback)."""
    inner = unwrap(ip)
    if isinstance(ip, ipaddress.IPv6Address) and ip in _NAT64_LOCAL:
        return "a NAT64 local-use address (64:ff9b:1::/48)"
    for candidate in dict.fromkeys((ip, inner)):
        if candidate in METADATA:
            return "a cloud metadata address"
    if inner.is_unspecified:
        return "the unspecified address (0.0.0.0 / ::)"
    if inner.is_loopback:
        return None if allow_loopback else "a loopback address"
    if inner in _CGNAT:
        return "shared address space (CGNAT, 100.64.0.0/10)"
    if inner.is_link_local:
        return "a link-local address"
    if inner.is_multicast:
        return "a multicast address"
    if any(inner in net for net in _DOCUMENTATION if net.version == inner.version):
        return "a documentation address"
    if inner in _BENCHMARK:
        return "a benchmarking address (198.18.0.0/15)"
    if inner.is_reserved:
        return "a reserved address"
    if inner.is_private:
        return "a private address"
    if not inner.is_global:
        return "not a globally routable address"
    return None


def _describe(ip: IPAddress) -> str:
    inner = unwrap(ip)
    return str(ip) if inner == ip else f"{ip} (which carries {inner})"


def domain_matches(host: str, domains: Sequence[str]) -> bool:
    """Whether `host` is one of `domains` or a subdomain of one."""
    return any(host == d or host.endswith("." + d) for d in (d.lower().strip(".") for d in domains) if d)


def _refuse_unparsable(text: str) -> None:
    """httpx rejects some IPv4 spellings a resolver would accept (0177.0.0.1); name the address
    they mean, so the refusal gives the real reason rather than "invalid URL"."""
    try:
        host = urllib.parse.urlsplit(text).hostname or ""
    except ValueError:
        return
    ip = parse_ipv4(host)  # raises Refused for an out-of-range part
    if ip is not None:
        reason = refusal(ip) or "not a canonical address spelling"
        raise Refused(f"refused {text}: {host} means {ip} is {reason}")


def check_url(url: str | httpx.URL, *, resolver: Resolver | None = None, allow_loopback: bool = False,
              allow_domains: Sequence[str] = (), deny_domains: Sequence[str] = ()) -> Target:
    """Check one URL (one hop) and resolve its host once; raise `Refused` with the reason."""
    text = str(url)
    try:
        parsed = httpx.URL(text)
    except (httpx.InvalidURL, TypeError, ValueError) as exc:
        _refuse_unparsable(text)
        raise Refused(f"{text!r} is not a valid URL: {exc}") from None
    if parsed.scheme not in ("http", "https"):
        raise Refused(f"only http and https URLs are fetched, not {parsed.scheme or 'a relative'!r} URLs: {text}")
    if parsed.userinfo:
        raise Refused(f"URLs carrying credentials (user@host) are refused: {text}")
    try:
        host = parsed.raw_host.decode("ascii").lower()
    except UnicodeDecodeError:
        raise Refused(f"host of {text!r} is not a valid name") from None
    if not host:
        raise Refused(f"URL has no host: {text}")
    host = host.rstrip(".") if ":" not in host else host
    port = parsed.port or (443 if parsed.scheme == "https" else 80)
    if domain_matches(host, deny_domains):
        raise Refused(f"{host} is on the deny list")
    if allow_domains and not domain_matches(host, allow_domains):
        raise Refused(f"{host} is not on the allow list ({', '.join(allow_domains)})")
    literal = parse_ip(host)
    if literal is not None:
        addresses = [literal]
    else:
        if host.rsplit(".", 1)[-1].isdigit():
            raise Refused(f"{host!r} ends in a number but is not a valid IPv4 address")
        try:
            answers = (resolver or system_resolver)(host, port)
        except (OSError, UnicodeError) as exc:
            raise Refused(f"cannot resolve {host}: {exc}") from None
        try:
            addresses = [ipaddress.ip_address(str(a).split("%", 1)[0]) for a in answers]
        except ValueError as exc:
            raise Refused(f"resolver gave a bad address for {host}: {exc}") from None
        if not addresses:
            raise Refused(f"{host} does not resolve to any address")
    for ip in addresses:
        reason = refusal(ip, allow_loopback=allow_loopback)
        if reason:
            if literal is None:
                via = f"{host} resolves to "
            else:
                via = "" if host == str(ip) else f"{host} means "
            raise Refused(f"refused {text}: {via}{_describe(ip)} is {reason}")
    return Target(url=parsed, host=host, port=port, addresses=tuple(dict.fromkeys(addresses)))
