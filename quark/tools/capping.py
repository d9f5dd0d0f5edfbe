"""Long text cut to a budget keeping its head and tail, saying what was cut (what a model needs
from a long log: how it started and how it ended)."""

from __future__ import annotations


def head_tail(text: str, limit: int) -> tuple[str, int]:
    """(text within `limit` characters, characters cut from the middle)."""
    if len(text) <= limit:
        return text, 0
    half = max(1, limit // 2)
    cut = len(text) - 2 * half
    return f"{text[:half]}\n[{cut} characters cut from the middle]\n{text[-half:]}", cut
