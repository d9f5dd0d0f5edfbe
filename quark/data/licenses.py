"""Which licence a document is under, and whether Quark may train on it.

Three kinds of evidence, strongest first: an SPDX tag in the file's head, a licence notice in the
head comment of a source file, the licence the input itself declares (a JSONL/Parquet `license`
field, or the built-in corpus), and the LICENSE/COPYING file of the folder or repository the file
sits in. GPL, LGPL and AGPL sources are excluded: their terms reach models trained on them in ways
this project does not accept. A dual licence ("MIT OR GPL-2.0") is fine: one alternative is free.
"""

from __future__ import annotations

import re
from pathlib import Path

UNKNOWN = "unknown"
HEAD_LINES = 40  # licence notices and SPDX tags live in a file's first lines

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
    """The expression of an `SPDX-License-Identifier:` tag in the document's head."""
    match = _SPDX.search(head(text))
    return match.group(1).strip() if match else None


def license_file_id(path: Path) -> str:
    """Classify a LICENSE/COPYING file; an unrecognised one is still a licence, just not a known one."""
    try:
        text = path.read_text(encoding="utf-8", errors="replace")[:20_000]
    except OSError:
        return UNKNOWN
    return classify(text) or UNKNOWN


def nearest_folder_license(file: str, folder_licenses: dict[str, str]) -> str | None:
    """The licence of the closest enclosing folder that has a LICENSE/COPYING file."""
    folder = Path(file).parent
    for candidate in (folder, *folder.parents):
        if (found := folder_licenses.get(str(candidate))) is not None:
            return found
    return None
