"""Grounded answers: retrieved chunks as numbered sources in the prompt, and citations `[n]` in replies.

The same rendering serves chat (`quark chat --index`), retrieval-augmented training data
(`quark data synth --kind grounded`) and `quark eval docqa --index`, so a model is trained on the
prompt shape it is later asked with:

    Answer from the numbered sources below and cite each source you use as [n]. …
    Sources:
    [1] /src/quark/db.py:140-162
    def transaction(conn): …

A citation is a bracket holding source numbers, `[2]` or `[1, 3]`; numbers outside 1..n cite nothing.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import asdict, dataclass

SOURCES_HEADER = "Sources:"
INSTRUCTION = ("Answer from the sources below; cite each one you use as [n]. "
               "If they do not contain the answer, say so.")
SOURCE_CHARS = 700  # a source longer than this is shown cut, with "…"
SHORTER_CHARS = (350, 160, 80)  # the cuts tried when not even one source fits a small context whole
_MARKER = re.compile(r"\[\s*(\d+(?:\s*,\s*\d+)*)\s*\]")


@dataclass(frozen=True)
class Source:
    n: int
    chunk_id: int | str
    path: str
    start_line: int
    end_line: int
    text: str
    title: str = ""

    @property
    def ref(self) -> str:
        return f"{self.path}:{self.start_line}-{self.end_line}"

    def block(self, chars: int = SOURCE_CHARS) -> str:
        text = self.text.strip()  # code keeps its lines and indentation
        return f"[{self.n}] {self.ref}\n{text if len(text) <= chars else text[:chars - 1].rstrip() + '…'}"

    def as_dict(self) -> dict:
        return {**asdict(self), "ref": self.ref}


def number_sources(chunks: Sequence) -> list[Source]:
    """Sources numbered 1.. from chunks (anything with id, path, start_line, end_line, text, title)."""
    return [Source(n, c.id, c.path, c.start_line, c.end_line, c.text, getattr(c, "title", "")) for n, c in
            enumerate(chunks, 1)]


def renumber(sources: Sequence[Source]) -> list[Source]:
    return [Source(n, s.chunk_id, s.path, s.start_line, s.end_line, s.text, s.title) for n, s in enumerate(sources, 1)]


def sources_block(sources: Sequence[Source], chars: int = SOURCE_CHARS) -> str:
    """The instruction and the numbered sources (each cut to `chars`), as one system-prompt
    section ('' for none)."""
    if not sources:
        return ""
    return "\n\n".join([INSTRUCTION, SOURCES_HEADER, *(s.block(chars) for s in sources)])


def citations(reply: str, count: int) -> list[int]:
    """Source numbers cited in `reply` (1..count), in order of first citation."""
    cited: list[int] = []
    for inside in _MARKER.findall(reply):
        for part in inside.split(","):
            n = int(part)
            if 1 <= n <= count and n not in cited:
                cited.append(n)
    return cited


def strip_citations(reply: str) -> str:
    return " ".join(_MARKER.sub(" ", reply).split())
