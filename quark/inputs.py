"""Reading what a user hands us — a file or stdin — with a size cap and a clear refusal.

Every file Quark reads whole goes through here so that the same three holes stay closed
everywhere: a FIFO or device (`/dev/zero`, a named pipe) given where a file is expected would
block or never end, an endless stream would exhaust memory, and bytes that are not UTF-8 would
surface as a `UnicodeDecodeError` far from the file that held them. Each refusal is a
`QuarkError` that names the file (or stdin) and what was wrong.
"""

from __future__ import annotations

import json
import stat
import sys
from pathlib import Path
from typing import Any, BinaryIO

from quark.errors import QuarkError

MiB = 1 << 20
DEFAULT_TEXT_CAP = 64 * MiB  # a prompt, a manifest, a config: far more than any real one
STDIN_CAP = 16 * MiB


def regular_file(path: Path | str, what: str = "file") -> Path:
    """`path` if it names an existing regular file; else a QuarkError saying what it is instead.

    `stat` (not `open`) decides, so a FIFO is refused without blocking on it."""
    path = Path(path)
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        raise QuarkError(f"cannot read {what} {path}: it does not exist") from None
    except OSError as exc:
        raise QuarkError(f"cannot read {what} {path}: {exc.strerror or exc}") from None
    if stat.S_ISDIR(mode):
        raise QuarkError(f"cannot read {what} {path}: it is a folder, not a file")
    if not stat.S_ISREG(mode):
        raise QuarkError(f"cannot read {what} {path}: it is not a regular file (a pipe, socket or device "
                         "cannot be read here)")
    return path


def existing_dir(path: Path | str, what: str = "folder") -> Path:
    """`path` if it names an existing folder; else a QuarkError."""
    path = Path(path)
    if not path.exists():
        raise QuarkError(f"cannot read {what} {path}: it does not exist")
    if not path.is_dir():
        raise QuarkError(f"{what} {path} is not a folder")
    return path


def _read_capped(stream: BinaryIO, max_bytes: int, where: str) -> bytes:
    data = stream.read(max_bytes + 1)
    if len(data) > max_bytes:
        raise QuarkError(f"{where} is larger than {_size(max_bytes)}; refusing to read it whole")
    return data


def _decode(data: bytes, where: str) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise QuarkError(f"{where} is not UTF-8 text (bad byte 0x{data[exc.start]:02x} at offset "
                         f"{exc.start})") from None


def read_bytes_file(path: Path | str, what: str = "file", max_bytes: int = DEFAULT_TEXT_CAP) -> bytes:
    """The whole content of a regular file of at most `max_bytes`."""
    path = regular_file(path, what)
    try:
        with open(path, "rb") as stream:
            return _read_capped(stream, max_bytes, f"{what} {path}")
    except OSError as exc:
        raise QuarkError(f"cannot read {what} {path}: {exc.strerror or exc}") from None


def read_text_file(path: Path | str, what: str = "file", max_bytes: int = DEFAULT_TEXT_CAP) -> str:
    """A regular file's text, UTF-8, at most `max_bytes`."""
    return _decode(read_bytes_file(path, what, max_bytes), f"{what} {path}")


def read_json_file(path: Path | str, what: str = "file", max_bytes: int = DEFAULT_TEXT_CAP) -> Any:
    """A regular file's JSON document; a syntax error names the file, line and column."""
    text = read_text_file(path, what, max_bytes)
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise QuarkError(f"{what} {path} is not valid JSON (line {exc.lineno}, column {exc.colno}: "
                         f"{exc.msg})") from None


def read_stdin_text(max_bytes: int = STDIN_CAP, stream: BinaryIO | None = None) -> str:
    """Everything on stdin as UTF-8 text, refusing more than `max_bytes` (`/dev/zero` ends here)."""
    if stream is None:
        stream = getattr(sys.stdin, "buffer", None)
        if stream is None:  # a text-only stdin (some test runners): it is already decoded
            text = sys.stdin.read(max_bytes + 1)
            if len(text) > max_bytes:
                raise QuarkError(f"stdin is larger than {_size(max_bytes)}; refusing to read it whole")
            return text
    return _decode(_read_capped(stream, max_bytes, "stdin"), "stdin")


def _size(n: int) -> str:
    return f"{n // MiB} MiB" if n >= MiB and n % MiB == 0 else f"{n} bytes"


def pydantic_problem(exc: Any) -> str:
    """A pydantic ValidationError's first problem as `field: message (got VALUE)`, one line."""
    first = exc.errors()[0]
    where = ".".join(str(part) for part in first.get("loc", ())) or "value"
    return f"field {where}: {first.get('msg', 'invalid')} (got {first.get('input')!r})"
