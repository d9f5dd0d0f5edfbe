"""What a document is written in: a programming language from its file name or shebang, else a
natural language from langdetect (seeded, so the same text always gets the same answer)."""

from __future__ import annotations

import functools
import re
from pathlib import PurePosixPath

UNKNOWN = "unknown"
# Files that are prose even though pygments has a lexer for them.
PROSE_SUFFIXES = frozenset({"", ".txt", ".text", ".md", ".markdown", ".rst", ".adoc", ".asciidoc", ".org", ".tex"})
_SHEBANG = re.compile(r"^#!\s*(?:/usr/bin/env\s+(?:-S\s+)?)?(?:\S*/)?([A-Za-z]+)")
_INTERPRETERS = {"python": "python", "bash": "bash", "sh": "bash", "zsh": "bash", "dash": "bash", "node": "javascript",
                 "perl": "perl", "ruby": "ruby", "php": "php", "lua": "lua", "Rscript": "r", "tclsh": "tcl"}
DETECT_CHARS = 2_000  # langdetect is slow on long texts and needs little


@functools.lru_cache(maxsize=4096)
def _lexer_language(key: str) -> str | None:
    from pygments.lexers import find_lexer_class_for_filename

    lexer = find_lexer_class_for_filename(key)
    return lexer.name.lower() if lexer is not None else None


def programming_language(source: str, text: str) -> str | None:
    """`python`, `c`, `bash`, ... for source files; None for prose and unknown kinds of file."""
    name = PurePosixPath(source.replace("\\", "/")).name
    suffix = PurePosixPath(name).suffix.lower()
    if suffix not in PROSE_SUFFIXES:
        # Cache on the suffix: pygments scans every lexer's patterns, far too slow per file.
        if (found := _lexer_language(f"x{suffix}")) is not None:
            return found
    elif suffix == "" and (found := _lexer_language(name)) is not None:
        return found  # Makefile, Dockerfile, ...
    if text.startswith("#!") and (match := _SHEBANG.match(text)):
        interpreter = re.sub(r"[\d.]+$", "", match.group(1))
        return _INTERPRETERS.get(interpreter)
    return None


def natural_language(text: str) -> str:
    """ISO 639-1 code of the text's language (`en`, `fr`, ...), or `unknown` when there is too little text."""
    from langdetect import DetectorFactory, detect
    from langdetect.lang_detect_exception import LangDetectException

    DetectorFactory.seed = 0
    try:
        return detect(text[:DETECT_CHARS])
    except LangDetectException:
        return UNKNOWN
