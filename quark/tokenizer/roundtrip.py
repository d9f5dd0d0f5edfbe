"""Check a tokenizer on files: token count, compression, byte-exact round trip, the first pieces.

Files are read as bytes and must be UTF-8: a tokenizer round trip is defined on text, and a file
that is not UTF-8 is refused with the offset of its first bad byte rather than silently altered
(decoding with replacement characters or surrogate escapes would make "roundtrip" meaningless).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path

from quark.errors import QuarkError
from quark.inputs import MiB, read_bytes_file
from quark.tokenizer import Tokenizer

MAX_INSPECT_BYTES = 256 * MiB  # a round trip holds the text and its ids in memory
_BATCH = 64  # files encoded together: SentencePiece spreads a batch over the cores


def read_utf8(path: Path) -> str:
    """The file's text, or a QuarkError naming the file (missing, unreadable, not UTF-8)."""
    data = read_bytes_file(path, "file", max_bytes=MAX_INSPECT_BYTES)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise QuarkError(f"{path}: not UTF-8 (byte 0x{data[exc.start]:02x} at offset {exc.start}); "
                         "Quark tokenizes UTF-8 text only") from None


def inspect_files(tok: Tokenizer, paths: Sequence[Path], lines: int = 3) -> Iterator[dict]:
    """Per file: chars, tokens, chars/token, roundtrip, and the pieces of its first `lines` lines."""
    for start in range(0, len(paths), _BATCH):
        group = list(paths[start:start + _BATCH])
        texts = [read_utf8(path) for path in group]
        for path, text, ids in zip(group, texts, tok.encode_batch(texts)):
            yield {"file": str(path), "chars": len(text), "bytes": len(text.encode("utf-8")), "tokens": len(ids),
                   "chars_per_token": round(len(text) / len(ids), 4) if ids else None,
                   "roundtrip": tok.decode(ids) == text,
                   "first_lines": tok.pieces(_first_lines(text, lines))}


def _first_lines(text: str, count: int) -> str:
    end = 0
    for _ in range(count):
        newline = text.find("\n", end)
        if newline < 0:
            return text
        end = newline + 1
    return text[:end]


def totals(reports: Sequence[dict]) -> dict:
    chars, tokens = sum(r["chars"] for r in reports), sum(r["tokens"] for r in reports)
    return {"files": len(reports), "chars": chars, "tokens": tokens,
            "chars_per_token": round(chars / tokens, 4) if tokens else None,
            "roundtrip": all(r["roundtrip"] for r in reports)}
