"""Which licence a document is under, and whether Quark may train on it.

Evidence, strongest first: an SPDX tag anywhere in the file, a licence notice in the head comment
of a source file, the licence the input itself declares (a JSONL/Parquet `license` field, or the
built-in corpus), a licence notice anywhere else in the text (templates and scripts often carry
theirs past the header), and the LICENSE/COPYING file of the nearest enclosing folder or repository
(a file with no licence of its own inherits it). GPL, LGPL and AGPL sources are excluded: their
terms reach models trained on them in ways this project does not accept. A dual licence
("MIT OR GPL-2.0") is fine: one alternative is free.

What happens to a document whose licence stays `unknown` is a stated policy (UNKNOWN_POLICIES):
`drop`, `keep`, or `auto` (the default): drop inside a folder or repository whose licence is
copyleft, where "unknown" most likely means "the repository's", keep elsewhere.
"""

from __future__ import annotations

import re
from pathlib import Path

UNKNOWN = "unknown"
HEAD_LINES = 40  # where a header notice lives; it outranks a declared licence
NOTICE_WINDOW = 2_000  # characters after an anchor that a notice's full pattern may span
UNKNOWN_POLICIES = ("auto", "keep", "drop")

_COPYLEFT = re.compile(r"\b(?:A|L)?GPL", re.IGNORECASE)
_SPDX = re.compile(r"SPDX-License-Identifier:\s*([^\n*]+?)\s*(?:\*/|-->|$)", re.MULTILINE)
LICENSE_FILE = re.compile(r"^(?:LICEN[CS]E|COPYING|UNLICENSE)(?:[._-].*)?$", re.IGNORECASE)

# (SPDX id, pattern), most specific first; patterns match licence files and notice headers alike.
_TEXTS: list[tuple[str, re.Pattern[str]]] = [(spdx, re.compile(pattern, re.IGNORECASE | re.DOTALL)) for spdx,
                                             pattern in [
    ("AGPL-3.0", r"GNU\s+AFFERO\s+GENERAL\s+PUBLIC\s+LICEN[CS]E"),
    ("LGPL-3.0", r"GNU\s+LESSER\s+GENERAL\s+PUBLIC\s+LICEN[CS]E.{0,200}?version\s+3"),
    ("LGPL-2.1", r"GNU\s+(?:LESSER|LIBRARY)\s+GENERAL\s+PUBLIC\s+LICEN[CS]E"),
    ("GPL-3.0", r"GNU\s+GENERAL\s+PUBLIC\s+LICEN[CS]E.{0,200}?version\s+3"),
    ("GPL-2.0", r"GNU\s+GENERAL\s+PUBLIC\s+LICEN[CS]E"),
    ("Apache-2.0", r"Apache\s+License,?\s+Version\s+2\.0"),
    ("MPL-2.0", r"Mozilla\s+Public\s+License,?\s+v(?:ersion)?\.?\s*2\.0"),
    ("PSF-2.0", r"PYTHON\s+SOFTWARE\s+FOUNDATION\s+LICEN[CS]E"),
    ("MIT", r"Permission\s+is\s+hereby\s+granted,\s+free\s+of\s+charge"),
    ("BSD-3-Clause", r"Redistribution\s+and\s+use\s+in\s+source\s+and\s+binary\s+forms.{0,1500}?Neither\s+the\s+name"),
    ("BSD-2-Clause", r"Redistribution\s+and\s+use\s+in\s+source\s+and\s+binary\s+forms"),
    ("Unlicense", r"This\s+is\s+free\s+and\s+unencumbered\s+software\s+released\s+into\s+the\s+public\s+domain"),
    ("CC0-1.0", r"CC0\s+1\.0\s+Universal"),
]]


# Words every notice of _TEXTS starts with: one pass of this over the whole text finds the few places
# worth classifying, so scanning a 1 MB file costs one regex pass, not one per licence.
_ANCHOR = re.compile(r"GNU\s+(?:AFFERO|LESSER|LIBRARY|GENERAL)|Apache\s+License|Mozilla\s+Public|PYTHON\s+SOFTWARE"
                     r"|Permission\s+is\s+hereby|Redistribution\s+and\s+use|This\s+is\s+free\s+and|CC0\s+1",
                     re.IGNORECASE)


def is_copyleft(expression: str) -> bool:
    """True when every alternative of an SPDX-like expression is GPL-family."""
    alternatives = re.split(r"\s+OR\s+|/", expression.strip().strip("()"), flags=re.IGNORECASE)
    return all(_COPYLEFT.search(alternative) for alternative in alternatives if alternative.strip())


def classify(text: str) -> str | None:
    """The SPDX id of a licence text or notice, or None when it is not one we recognise.

    The licence named first wins: licence files open with their own title and may mention others
    later (CPython's LICENSE discusses the GPL, but it is the PSF licence). On a tie, the more
    specific pattern (listed first) wins: "GNU GPL ... version 3" over "GNU GPL".
    """
    found = [(match.start(), order, spdx) for order, (spdx, pattern) in enumerate(_TEXTS)
             if (match := pattern.search(text))]
    return min(found)[2] if found else None


def head(text: str) -> str:
    return "\n".join(text.split("\n", HEAD_LINES)[:HEAD_LINES])


def spdx_tag(text: str) -> str | None:
    """The expression of the first `SPDX-License-Identifier:` tag anywhere in the document."""
    match = _SPDX.search(text)
    return match.group(1).strip() if match else None


def find_notice(text: str) -> str | None:
    """The first licence notice anywhere in `text` (see classify), in one anchored pass."""
    for anchor in _ANCHOR.finditer(text):
        if (found := classify(text[anchor.start(): anchor.start() + NOTICE_WINDOW])) is not None:
            return found
    return None


def license_file_id(path: Path) -> str:
    """Classify a LICENSE/COPYING file; an unrecognised one is still a licence, just not a known one."""
    try:
        text = path.read_text(encoding="utf-8", errors="replace")[:20_000]
    except OSError:
        return UNKNOWN
    return classify(text) or UNKNOWN


def enclosing_licenses(file: str, folder_licenses: dict[str, str]) -> list[str]:
    """The licences of the folders enclosing `file` that have a LICENSE/COPYING file, nearest first."""
    folder = Path(file).parent
    return [found for candidate in (folder, *folder.parents) if (found := folder_licenses.get(str(candidate)))]


def drops_unknown(policy: str, enclosing: list[str]) -> bool:
    """Whether a document of unknown licence is dropped under `policy` (see the module docstring)."""
    if policy not in UNKNOWN_POLICIES:
        raise ValueError(policy)
    return policy == "drop" or (policy == "auto" and any(is_copyleft(found) for found in enclosing))
