"""What a user turn leaves in long-term memory: facts found by rules, and the message in chunks.

The rules are deliberately plain regular expressions (a small model cannot be trusted to extract
facts): names ("my name is Ada", "call me Ada"), likes and dislikes ("I like/love/prefer/hate …"),
decisions ("we decided to …", "let's use …"), explicit notes ("remember that …"), and the files
and `identifiers` a message refers to. Each fact is a short sentence in the third person so it
reads well when injected into a system prompt ("[m12] user's name is Ada").
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from quark.text import STOPWORDS, truncate

CHUNK_CHARS = 400  # a chunk is at most this many characters, cut at paragraph or sentence ends


@dataclass(frozen=True)
class NewMemory:
    kind: str  # fact | chunk | pinned
    text: str
    tag: str | None = None


# A clause runs to the end of its sentence or to "and I …"/"but we …"; a dot inside a word
# (setup.py, v1.2) does not end it.
_CLAUSE = r"((?:(?!,?\s+(?:and|but|so)\s+(?:I|we)\b)(?:[^.!?\n;]|[.!?](?=[^\s.!?]))){1,100})"
_NAME = re.compile(r"\b(?i:my name is|my name's|call me|i am called|i'm called)\s+"
                   r"([A-Za-z][\w'-]*(?:\s+[A-Z][\w'-]*)?)")
_PREFERENCE = re.compile(r"\bI\s+(?:really\s+|do\s+|don't\s+|do not\s+)?"
                         r"(like|love|enjoy|prefer|hate|dislike|can't stand|cannot stand)\s+" + _CLAUSE,
                         re.IGNORECASE)
_DECISION = re.compile(r"\b(?:we|I)\s+(?:have\s+)?(?:decided|agreed|chose|settled)\s+(?:to\s+|on\s+)?" + _CLAUSE
                       + r"|\blet's\s+(?:use|go with|pick|choose|do)\s+" + _CLAUSE
                       + r"|\bwe(?:'ll| will)\s+use\s+" + _CLAUSE, re.IGNORECASE)
_NOTE = re.compile(r"\b(?:remember|note|keep in mind)\s+that\s+" + _CLAUSE, re.IGNORECASE)
_PATH = re.compile(r"(?<![\w/.-])((?:~|\.{1,2})?/?(?:[\w.-]+/)+[\w.-]+|[\w-]+\.(?:py|pyi|js|ts|tsx|jsx|md|toml|json|"
                   r"yaml|yml|txt|rs|go|c|h|cc|cpp|hpp|java|kt|sh|sql|html|css|ipynb|csv|parquet|db))(?![\w/])")
_IDENTIFIER = re.compile(r"`([A-Za-z_][\w.]*(?:\(\))?)`")
_PREFERENCE_VERBS = {"like": "likes", "love": "loves", "enjoy": "enjoys", "prefer": "prefers", "hate": "hates",
                     "dislike": "dislikes", "can't stand": "can't stand", "cannot stand": "can't stand"}


def extract_facts(text: str) -> list[NewMemory]:
    """Facts stated in one user message, in order of appearance, without duplicates."""
    facts: list[NewMemory] = []
    for match in _NAME.finditer(text):
        name = match.group(1)
        if name.split()[0].lower() not in STOPWORDS:  # "my name is not important"
            facts.append(NewMemory("fact", f"user's name is {name[0].upper()}{name[1:]}", "name"))
    for match in _PREFERENCE.finditer(text):
        negated = re.search(r"don't|do not", match.group(0), re.IGNORECASE)
        verb = _PREFERENCE_VERBS[match.group(1).lower()]
        facts.append(NewMemory("fact", f"user {'does not ' + match.group(1).lower() if negated else verb} "
                                       f"{_clean(match.group(2))}", "preference"))
    for match in _DECISION.finditer(text):
        clause = next(g for g in match.groups() if g)
        verb = "use " if match.group(0).lower().startswith(("let's", "we'll", "we will")) else ""
        facts.append(NewMemory("fact", f"decision: {verb}{_clean(clause)}", "decision"))
    for match in _NOTE.finditer(text):
        facts.append(NewMemory("fact", f"note: {_clean(match.group(1))}", "note"))
    for path in dict.fromkeys(m.group(1).rstrip(".") for m in _PATH.finditer(_without_urls(text))):
        facts.append(NewMemory("fact", f"file referenced: {path}", "file"))
    for ident in dict.fromkeys(m.group(1) for m in _IDENTIFIER.finditer(text)):
        facts.append(NewMemory("fact", f"code referenced: `{ident}`", "code"))
    return list(dict.fromkeys(facts))


def chunk_message(text: str, limit: int = CHUNK_CHARS) -> list[str]:
    """Split a message into chunks of at most `limit` characters at paragraph, then sentence, ends.

    Every character of the message (whitespace runs aside) lands in exactly one chunk, so a
    message is searchable in full; a single over-long sentence is cut at a word boundary."""
    chunks: list[str] = []
    current = ""
    for piece in re.split(r"(?<=[.!?])\s+|\n\s*\n", text.strip()):
        piece = " ".join(piece.split())
        while len(piece) > limit:
            cut = piece.rfind(" ", 0, limit)
            cut = cut if cut > limit // 2 else limit
            if current:
                chunks.append(current)
                current = ""
            chunks.append(piece[:cut].rstrip())
            piece = piece[cut:].lstrip()
        if not piece:
            continue
        if current and len(current) + 1 + len(piece) > limit:
            chunks.append(current)
            current = piece
        else:
            current = f"{current} {piece}" if current else piece
    if current:
        chunks.append(current)
    return chunks


def _clean(clause: str) -> str:
    return truncate(clause.strip().rstrip(",:"), 100)


def _without_urls(text: str) -> str:
    return re.sub(r"\b\w+://\S+", " ", text)
