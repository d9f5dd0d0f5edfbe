"""Personal data and secrets, found by pattern and replaced by a placeholder that names what was there.

The patterns are tuned for a corpus that is mostly source code: a placeholder keeps the code's
shape (`password = "<SECRET>"`), IPs are only scrubbed when they are public (127.0.0.1 and
10.0.0.1 are configuration, not personal data) and do not look like version or section numbers,
IPv6 needs four groups so that slices like `a[1::2]` are left alone, and a generic `key = value`
secret needs a key that says so and a value with both letters and digits. Specific token formats
run before the generic rule so each secret is named as precisely as possible.

Speed: Python's `re` only skips ahead quickly when a pattern starts with a literal or a simple
character class, so the patterns start with one and the checks around the match (word boundaries,
the key name before a `=`) are done in `valid` on the few candidates found.
"""

from __future__ import annotations

import ipaddress
import re
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class Rule:
    label: str                      # also the placeholder: <LABEL>
    pattern: re.Pattern[str]
    group: int = 0                  # which group is the secret (the rest of the match is kept)
    valid: Callable[[re.Match[str]], bool] | None = None  # a second look at the match, in context
    hints: tuple[str, ...] = ()     # lower-case substrings one of which must occur, else skip the regex

    @property
    def placeholder(self) -> str:
        return f"<{self.label}>"


def _before(match: re.Match[str], width: int) -> str:
    return match.string[max(0, match.start() - width):match.start()]


def _after(match: re.Match[str], width: int) -> str:
    return match.string[match.end():match.end() + width]


def _is_word(char: str) -> bool:
    return char.isalnum() or char == "_"


def _standalone(match: re.Match[str]) -> bool:
    """Not glued to a longer word on either side (what a leading `\\b` would check, but fast)."""
    before, after = _before(match, 1), _after(match, 1)
    return not (before and (_is_word(before) or before == "-")) and not (after and _is_word(after))


_NOT_AN_ADDRESS = re.compile(r"(?:section|sections|§|version|versions|release|rfc\s*\d+)[\s#:.-]*$", re.IGNORECASE)


def _public_ipv4(match: re.Match[str]) -> bool:
    """A public address standing alone, not `1.2.3.4`-like examples nor `section 8.2.4.45` of a spec."""
    candidate, before, after = match.group(0), _before(match, 1), _after(match, 2)
    if (before and (_is_word(before) or before == ".")) or (after[:1] and _is_word(after[:1])) \
            or (after[:1] == "." and after[1:2].isdigit()):
        return False
    if all(len(octet) == 1 for octet in candidate.split(".")) or _NOT_AN_ADDRESS.search(_before(match, 24)):
        return False
    try:
        return ipaddress.IPv4Address(candidate).is_global
    except ValueError:
        return False


def _public_ipv6(match: re.Match[str]) -> bool:
    candidate, before, after = match.group(0), _before(match, 1), _after(match, 1)
    if (before and (_is_word(before) or before in ":.")) or (after and (_is_word(after) or after == ":")):
        return False
    if sum(1 for part in candidate.split(":") if part) < 4:
        return False
    try:
        return ipaddress.IPv6Address(candidate).is_global
    except ValueError:
        return False


_KEY_NAME = re.compile(r"(?:api[_-]?key|apikey|secret|token|passw(?:or)?d|pwd|access[_-]?key|private[_-]?key"
                       r"|credentials?)[\w.-]*[\"']?\s*$", re.IGNORECASE)
_ENV_LINE = re.compile(r"(?:^|\n)[ \t]*(?:export[ \t]+)?[\w.-]*$")
_KEY_HINTS = ("key", "secret", "token", "passw", "pwd", "credential")


def _keyed_secret(match: re.Match[str]) -> bool:
    """`<name with key/secret/token/password> = value` with a value of letters and digits."""
    value = match.group(1)
    if not (any(c.isdigit() for c in value) and any(c.isalpha() for c in value)):
        return False
    return bool(_KEY_NAME.search(_before(match, 64)))


def _env_secret(match: re.Match[str]) -> bool:
    """The same, as a whole `KEY=value` line of a .env, shell or ini file."""
    return _keyed_secret(match) and bool(_ENV_LINE.search(_before(match, 80)))


_OCTET = r"\d{1,3}"
_HEX = r"[0-9A-Fa-f]"

RULES: tuple[Rule, ...] = (
    Rule("PRIVATE_KEY", re.compile(
        r"-----BEGIN ([A-Z0-9 ]*)PRIVATE KEY(?: BLOCK)?-----(?:.*?-----END \1PRIVATE KEY(?: BLOCK)?-----"
        r"|(?:\s*[A-Za-z0-9+/=:,-]+)*)", re.DOTALL), hints=("private key",)),
    Rule("AWS_ACCESS_KEY", re.compile(r"(?:AKIA|ASIA|AGPA|AIDA|AROA|ANPA|ANVA|AIPA)[0-9A-Z]{16}"), valid=_standalone,
         hints=("akia", "asia", "agpa", "aida", "aroa", "anpa", "anva", "aipa")),
    Rule("GITHUB_TOKEN", re.compile(r"gh[pousr]_[A-Za-z0-9]{36,255}|github_pat_[A-Za-z0-9_]{22,255}"),
         valid=_standalone, hints=("ghp_", "gho_", "ghu_", "ghs_", "ghr_", "github_pat_")),
    Rule("OPENAI_KEY", re.compile(r"sk-(?:proj-|svcacct-|admin-)?[A-Za-z0-9_-]{20,}"), valid=_standalone,
         hints=("sk-",)),
    Rule("SLACK_TOKEN", re.compile(r"xox[abposr]-[A-Za-z0-9-]{10,}"), valid=_standalone, hints=("xox",)),
    Rule("GOOGLE_API_KEY", re.compile(r"AIza[0-9A-Za-z_-]{35}"), valid=_standalone, hints=("aiza",)),
    # key = "value" / key: 'value' in code and config: the value is replaced, the quotes kept
    Rule("SECRET", re.compile(r"[:=][ \t]*[\"']([^\"'\s]{8,})[\"']"), group=1, valid=_keyed_secret, hints=_KEY_HINTS),
    # KEY=value lines of .env / shell / ini files
    Rule("SECRET", re.compile(r"[:=][ \t]*([A-Za-z0-9+/_=.-]{12,})[ \t]*$", re.MULTILINE), group=1,
         valid=_env_secret, hints=_KEY_HINTS),
    Rule("EMAIL", re.compile(
        r"[A-Za-z0-9._%+-]+@(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+[A-Za-z]{2,24}\b"), hints=("@",)),
    Rule("IP_ADDRESS", re.compile(rf"{_OCTET}\.{_OCTET}\.{_OCTET}\.{_OCTET}"), valid=_public_ipv4, hints=(".",)),
    Rule("IP_ADDRESS", re.compile(rf"{_HEX}{{1,4}}(?::{_HEX}{{0,4}}){{3,7}}"), valid=_public_ipv6, hints=(":",)),
    Rule("PHONE", re.compile(r"\+\d{1,3}[ .-]?\(?\d{1,4}\)?(?:[ .-]\d{2,4}){2,4}"), valid=_standalone, hints=("+",)),
    Rule("PHONE", re.compile(r"\(\d{3}\)\s?\d{3}[.-]\d{4}"), valid=_standalone, hints=("(",)),
    Rule("PHONE", re.compile(r"\d{3}[.-]\d{3}[.-]\d{4}"), valid=_standalone, hints=("-", ".")),
)


def scrub(text: str, counts: Counter[str] | None = None) -> str:
    """Replace every match of RULES in `text`; add how many of each kind were replaced to `counts`."""
    lowered = text.lower()
    for rule in RULES:
        if rule.hints and not any(hint in lowered for hint in rule.hints):
            continue

        def replace(match: re.Match[str], rule: Rule = rule) -> str:
            if rule.valid is not None and not rule.valid(match):
                return match.group(0)
            if counts is not None:
                counts[rule.label] += 1
            if rule.group == 0:
                return rule.placeholder
            start, end = match.start(rule.group) - match.start(), match.end(rule.group) - match.start()
            whole = match.group(0)
            return whole[:start] + rule.placeholder + whole[end:]

        text = rule.pattern.sub(replace, text)
    return text
