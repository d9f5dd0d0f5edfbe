"""Streaming a completion's text safely: what of the text decoded so far may be shown yet.

A row's completion is re-decoded after every token and only the new suffix is emitted, holding
back (a) an incomplete UTF-8 character (byte-fallback pieces decode to U+FFFD until the last
byte arrives) and (b) any tail that could still grow into a stop string, so a stop string is
never half-shown. Tool-call detection belongs here too: it is another "hold back until known".
"""

from __future__ import annotations

from collections.abc import Sequence

REPLACEMENT = "\ufffd"  # what a partial multi-byte character decodes to


class TextStream:
    """The shown part of one completion's text, and its stop strings."""

    def __init__(self, stops: Sequence[str] = ()) -> None:
        self.stops = tuple(stops)
        self.emitted = 0  # characters of the text already shown

    def cut_at_stop(self, text: str) -> str | None:
        """If a stop string now appears in `text` (the whole completion so far), the unshown text
        before it, after which nothing more is shown; None when no stop string appears."""
        for stop in self.stops:
            cut = text.find(stop, max(0, self.emitted - len(stop)))
            if cut != -1:
                new = text[self.emitted:cut] if cut > self.emitted else ""
                self.emitted = max(self.emitted, cut)
                return new
        return None

    def flush(self, text: str, *, final: bool) -> str:
        """The part of `text` not yet shown and safe to show; `final` shows everything left."""
        safe = len(text)
        if not final:
            if text.endswith(REPLACEMENT):  # a multi-byte character still arriving byte by byte
                safe = len(text.rstrip(REPLACEMENT))
            for stop in self.stops:  # hold back a tail that may grow into a stop string
                for k in range(min(len(stop) - 1, safe), 0, -1):
                    if text[:safe].endswith(stop[:k]):
                        safe -= k
                        break
        new = text[self.emitted:safe] if safe > self.emitted else ""
        self.emitted = max(self.emitted, safe)
        return new
