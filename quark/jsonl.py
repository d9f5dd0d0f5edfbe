"""JSONL data files (alignment, evaluation): every bad line named by file and line number; written
whole or not at all."""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from quark.atomic import atomic_file
from quark.errors import QuarkError
from quark.inputs import regular_file


def read_jsonl(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    """(line number, object) for every non-blank line; a QuarkError names the first bad one."""
    path = Path(path)
    if not path.exists():
        raise QuarkError(f"no such data file: {path}")
    regular_file(path, "data file")
    with open(path, "rb") as handle:
        for number, raw in enumerate(handle, 1):
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise QuarkError(f"{path}:{number}: not UTF-8 text (bad byte 0x{raw[exc.start]:02x} at column "
                                 f"{exc.start + 1})") from None
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except ValueError as exc:
                raise QuarkError(f"{path}:{number}: not valid JSON ({exc.msg})") from None
            if not isinstance(row, dict):
                raise QuarkError(f"{path}:{number}: expected a JSON object, got {type(row).__name__}")
            yield number, row


def field(path: Path, number: int, row: dict, name: str, kind: type | tuple[type, ...], *, default: Any = ...) -> Any:
    """row[name], checked to be of `kind`; a missing or mistyped field is a one-line error."""
    if name not in row:
        if default is not ...:
            return default
        raise QuarkError(f"{path}:{number}: missing field {name!r}")
    value = row[name]
    if not isinstance(value, kind):
        expected = kind.__name__ if isinstance(kind, type) else " or ".join(k.__name__ for k in kind)
        raise QuarkError(f"{path}:{number}: field {name!r} must be {expected}, got {type(value).__name__}")
    return value


def write_jsonl(path: Path, rows: Iterable[dict[str, Any]]) -> None:
    """One JSON object a line, through a temp file renamed into place (a failure leaves nothing)."""
    with atomic_file(path) as handle:
        handle.writelines(json.dumps(row) + "\n" for row in rows)
