"""The extractive summarizer that older turns are folded into.

Small models cannot summarise, so a folded message becomes one line: its role and its first
sentence (fenced code is noted by language and length instead of being quoted), cut to
SUMMARY_CHARS. The line depends only on the message, so a conversation's summary is a plain
function of which messages were folded, which keeps concurrent writers and forks consistent.
Nothing is lost by folding: every message is also kept whole in long-term memory as chunks.
"""

from __future__ import annotations

import re

from quark.text import first_sentence, truncate

SUMMARY_CHARS = 160
_FENCE = re.compile(r"```([\w+-]*)[^\n]*\n(.*?)(?:```|$)", re.DOTALL)


def summary_line(role: str, content: str) -> str:
    """'- user: My name is Ada.' — one line standing for one folded message."""
    code = [(m.group(1) or "code", m.group(2).count("\n") + 1) for m in _FENCE.finditer(content)]
    prose = _FENCE.sub(" ", content)
    text = first_sentence(prose) or "(no text)"
    if code:
        text += " [" + ", ".join(f"{lang} block, {n} lines" for lang, n in code) + "]"
    return f"- {role}: {truncate(text, SUMMARY_CHARS)}"


def summary_lines(summary: str) -> list[str]:
    return [line for line in summary.splitlines() if line.strip()]
