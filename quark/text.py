"""Small text helpers (words, stopwords, sentences, truncation) shared by memory, chat and retrieval."""

from __future__ import annotations

import re

# Function words that carry no topic: dropped from full-text queries and interest counts.
STOPWORDS = frozenset("""
a about above after again against all am an and any are as at be because been before being below
between both but by can could did do does doing down during each few for from further had has have
having he her here hers herself him himself his how i if in into is it its itself just let me more
most my myself no nor not now of off on once only or other our ours ourselves out over own please
same she should so some such than that the their theirs them themselves then there these they this
those through to too under until up very was we were what when where which while who whom why will
with would you your yours yourself yourselves tell know like think want need get got also okay ok
yes hi hello hey thanks thank really remember
""".split())

_WORD = re.compile(r"[A-Za-z][A-Za-z0-9_'-]*")
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+|\n+")


def words(text: str) -> list[str]:
    """Lower-cased words (letters first), apostrophes kept inside words."""
    return [w.lower().strip("'-") for w in _WORD.findall(text)]


def content_words(text: str, *, min_length: int = 2) -> list[str]:
    """Words that are not stopwords, in order, duplicates kept."""
    return [w for w in words(text) if len(w) >= min_length and w not in STOPWORDS and "'" not in w]


def first_sentence(text: str) -> str:
    """The first non-empty sentence or line of `text`, whitespace collapsed."""
    for part in _SENTENCE_END.split(text.strip()):
        part = " ".join(part.split())
        if part:
            return part
    return ""


def truncate(text: str, limit: int) -> str:
    """At most `limit` characters, cut at a word boundary and marked with an ellipsis when cut."""
    text = " ".join(text.split())
    if len(text) <= limit:
        return text
    cut = text[: limit - 1]
    space = cut.rfind(" ")
    return (cut[:space] if space > limit // 2 else cut).rstrip(" ,;:") + "…"
