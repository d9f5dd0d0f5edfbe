"""Code-aware chunking: split a file where its meaning splits, and remember where each piece was.

- Python: at top-level definitions (decorators included), with the module's preamble (docstring,
  imports, constants) as a chunk of its own; a class too long for one chunk is split at its methods.
  Source that does not parse falls back to definition lines found by pattern.
- Other code (JavaScript/TypeScript, Go, Rust, Java, C/C++, shell…): at lines that start a
  definition at column 0 (`function`, `class`, `fn`, `func`, `def`, `pub fn`, …).
- Markdown: at headings (`#`…); reStructuredText: at underlined titles; other text: at blank-line
  paragraphs.
Every chunk carries its 1-based, inclusive line span and a title (the definition's name or the
heading). A piece longer than MAX_LINES (or MAX_CHARS) is cut into windows at blank lines where it can be.
"""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass
from pathlib import PurePath

MAX_LINES = 60
MAX_CHARS = 2400
CODE_SUFFIXES = {".js", ".jsx", ".ts", ".tsx", ".mjs", ".go", ".rs", ".java", ".kt", ".c", ".h", ".cc", ".cpp",
                 ".hpp", ".cs", ".swift", ".rb", ".php", ".scala", ".sh", ".bash", ".lua"}
_DEFINITION = re.compile(r"^(?:export\s+)?(?:pub(?:\([^)]*\))?\s+)?(?:async\s+)?(?:static\s+)?"
                         r"(?:def|class|function|fn|func|struct|enum|trait|impl|interface|type|module|"
                         r"public|private|protected)\b")
_PY_DEFINITION = re.compile(r"^(?:async\s+def|def|class)\s+(\w+)")
_MD_HEADING = re.compile(r"^#{1,6}\s+\S")
_RST_UNDERLINE = re.compile(r"^([=\-~^\"'`#*+])\1{2,}\s*$")


@dataclass(frozen=True)
class Chunk:
    text: str
    start_line: int  # 1-based
    end_line: int  # inclusive
    kind: str  # code | section | text
    title: str = ""

    @property
    def span(self) -> str:
        return f"{self.start_line}-{self.end_line}"


def chunk_text(path: str | PurePath, text: str) -> list[Chunk]:
    """The chunks of a file's text, by the kind its name says it is."""
    suffix = PurePath(path).suffix.lower()
    lines = text.splitlines(keepends=True)
    if not lines:
        return []
    if suffix in (".py", ".pyi"):
        pieces = _python(text, lines)
        kind = "code"
    elif suffix in CODE_SUFFIXES:
        pieces, kind = _at_lines(lines, lambda line: bool(_DEFINITION.match(line))), "code"
    elif suffix in (".md", ".markdown"):
        pieces, kind = _at_lines(lines, lambda line: bool(_MD_HEADING.match(line)), title=_md_title), "section"
    elif suffix == ".rst":
        pieces, kind = _rst(lines), "section"
    else:
        pieces, kind = _paragraphs(lines), "text"
    chunks = []
    for start, end, title in pieces:
        for a, b in _windows(lines, start, end):
            body = "".join(lines[a:b])
            if body.strip():
                chunks.append(Chunk(body, a + 1, b, kind, title))
    return chunks


def _python(text: str, lines: list[str]) -> list[tuple[int, int, str]]:
    """(start, end, title) 0-based half-open line ranges of a Python module's pieces."""
    try:
        tree = ast.parse(text)
    except (SyntaxError, ValueError):
        return _at_lines(lines, lambda line: bool(_PY_DEFINITION.match(line)))
    pieces: list[tuple[int, int, str]] = []
    cursor = 0
    for node in tree.body:
        if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            continue
        start = min([node.lineno, *(d.lineno for d in node.decorator_list)]) - 1
        end = node.end_lineno or node.lineno
        if start > cursor:
            pieces.append((cursor, start, "module" if not pieces else ""))
        if isinstance(node, ast.ClassDef) and end - start > MAX_LINES:
            pieces += _class_pieces(node, start, end)
        else:
            pieces.append((start, end, node.name))
        cursor = end
    if cursor < len(lines):
        pieces.append((cursor, len(lines), "module" if not pieces else ""))
    return pieces


def _class_pieces(node: ast.ClassDef, start: int, end: int) -> list[tuple[int, int, str]]:
    """A long class: its header (up to the first method), then each method as `Class.method`."""
    pieces = []
    cursor = start
    for item in node.body:
        if isinstance(item, (ast.FunctionDef, ast.AsyncFunctionDef)):
            item_start = min([item.lineno, *(d.lineno for d in item.decorator_list)]) - 1
            if item_start > cursor:
                pieces.append((cursor, item_start, node.name))
            pieces.append((item_start, item.end_lineno or item.lineno, f"{node.name}.{item.name}"))
            cursor = item.end_lineno or item.lineno
    if cursor < end:
        pieces.append((cursor, end, node.name))
    return pieces


def _md_title(line: str) -> str:
    return line.lstrip("#").strip()


def _at_lines(lines: list[str], starts, title=None) -> list[tuple[int, int, str]]:
    """Pieces that begin at every line where `starts(line)` holds (the first also at line 0)."""
    marks = [i for i, line in enumerate(lines) if starts(line)]
    bounds = sorted({0, *marks})
    pieces = []
    for a, b in zip(bounds, [*bounds[1:], len(lines)]):
        head = lines[a].strip()
        name = title(lines[a]) if title and a in marks else (_name_of(head) if a in marks else "")
        pieces.append((a, b, name))
    return pieces


def _name_of(line: str) -> str:
    match = re.search(r"\b(?:def|class|function|fn|func|struct|enum|trait|interface|type)\s+([A-Za-z_]\w*)", line)
    return match.group(1) if match else line[:60]


def _rst(lines: list[str]) -> list[tuple[int, int, str]]:
    titles = [i - 1 for i, line in enumerate(lines) if i > 0 and _RST_UNDERLINE.match(line) and lines[i - 1].strip()
              and not _RST_UNDERLINE.match(lines[i - 1])]
    bounds = sorted({0, *titles})
    return [(a, b, lines[a].strip() if a in titles else "") for a, b in zip(bounds, [*bounds[1:], len(lines)])]


def _paragraphs(lines: list[str]) -> list[tuple[int, int, str]]:
    """Plain text: one piece; _windows cuts it at blank lines when it is long."""
    return [(0, len(lines), "")]


def _windows(lines: list[str], start: int, end: int) -> list[tuple[int, int]]:
    """[start, end) cut into windows of at most MAX_LINES lines and about MAX_CHARS characters,
    preferring to cut after a blank line in a window's second half."""
    out = []
    while start < end:
        stop, size = start, 0
        while stop < end and stop - start < MAX_LINES and (size + len(lines[stop]) <= MAX_CHARS or stop == start):
            size += len(lines[stop])
            stop += 1
        if stop < end:
            blank = [i + 1 for i in range(start + (stop - start) // 2, stop) if not lines[i].strip()]
            stop = blank[-1] if blank else stop
        out.append((start, stop))
        start = stop
    return out
