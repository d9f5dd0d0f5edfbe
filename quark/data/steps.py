"""Quark's own datatrove blocks: normalise, detect language, apply the licence policy, scrub, annotate.

Each block does one thing to the stream of Documents and reports what it dropped or replaced as a
datatrove stat named `dropped_<reason>` or `scrubbed_<KIND>`; the ingest summary adds those up across
tasks. Metadata keys the blocks agree on: `source`, `origin_file` (the file on disk it was read
from, for folder licences), `license`, `language`, `is_code`, `code_blocks`, `chars`, `sha256`.
"""

from __future__ import annotations

import hashlib
import re
from collections import Counter
from pathlib import Path

from datatrove.data import Document, DocumentsPipeline
from datatrove.pipeline.base import PipelineStep
from datatrove.pipeline.filters.base_filter import BaseFilter
from datatrove.pipeline.formatters.base import BaseFormatter

from quark.data import licenses
from quark.data.language import natural_language, programming_language
from quark.data.pii import scrub
from quark.errors import QuarkError

_TRAILING_SPACE = re.compile(r"[ \t]+$", re.MULTILINE)
_FENCE = re.compile(r"^ {0,3}(`{3,}|~{3,})(.*)$", re.MULTILINE)


def normalize_whitespace(text: str) -> str:
    """CRLF/CR to LF, no BOM, no trailing spaces, no leading or trailing blank lines, one final newline.

    Never touches leading whitespace of a line: indentation is meaning in Python and YAML.
    """
    text = text.removeprefix("\ufeff").replace("\r\n", "\n").replace("\r", "\n")
    text = _TRAILING_SPACE.sub("", text).strip("\n")
    return text + "\n" if text else ""


def count_code_blocks(text: str) -> int:
    """Fenced (``` or ~~~) code blocks, CommonMark style: a block closes on a fence of the same
    character at least as long with nothing after it; an unclosed block runs to the end."""
    blocks, opened = 0, None
    for match in _FENCE.finditer(text):
        fence, rest = match.group(1), match.group(2)
        if opened is None:
            if fence[0] == "`" and "`" in rest:
                continue  # ```inline``` code, not a fence
            opened, blocks = fence, blocks + 1
        elif fence[0] == opened[0] and len(fence) >= len(opened) and not rest.strip():
            opened = None
    return blocks


class Normalize(BaseFormatter):
    name = "Normalise whitespace"

    def format(self, text: str) -> str:
        return normalize_whitespace(text)


class DropEmpty(BaseFilter):
    name = "Drop empty"

    def filter(self, doc: Document) -> bool | tuple[bool, str]:
        return True if doc.text.strip() else (False, "empty")


class DetectLanguage(PipelineStep):
    """Programming language by file name or shebang; otherwise natural language by langdetect."""

    type = "Annotate"
    name = "Detect language"

    def run(self, data: DocumentsPipeline, rank: int = 0, world_size: int = 1) -> DocumentsPipeline:
        for doc in data:
            with self.track_time():
                meta = doc.metadata
                code = programming_language(meta["source"], doc.text)
                meta["is_code"] = code is not None
                if not meta.get("language"):
                    meta["language"] = code or natural_language(doc.text)
                self.stat_update(f"language_{meta['language']}")
            yield doc


class LicenseFilter(BaseFilter):
    """Settle each document's licence (see quark.data.licenses) and drop GPL-family ones.

    Drop reasons: `copyleft_license` (the document's own tag, notice or declared licence),
    `copyleft_folder` (no licence of its own; the enclosing folder's or repository's is copyleft),
    `unknown_license` (no licence found, and the `unknown` policy says drop).
    """

    name = "Licence policy"

    def __init__(self, folder_licenses: dict[str, str], unknown_policy: str = "auto"):
        super().__init__()
        if unknown_policy not in licenses.UNKNOWN_POLICIES:
            raise QuarkError(f"unknown licence policy {unknown_policy!r} "
                             f"(expected one of {', '.join(licenses.UNKNOWN_POLICIES)})")
        self.folder_licenses, self.unknown_policy = folder_licenses, unknown_policy

    def own_license(self, doc: Document) -> str | None:
        """The licence the document states itself: tag, header notice, declared field, body notice."""
        meta = doc.metadata
        header = licenses.spdx_tag(doc.text)
        if header is None and meta.get("is_code"):
            header = licenses.classify(licenses.head(doc.text))
        return header or meta.get("license") or licenses.find_notice(doc.text)

    def filter(self, doc: Document) -> bool | tuple[bool, str]:
        origin = doc.metadata.get("origin_file")
        enclosing = licenses.enclosing_licenses(origin, self.folder_licenses) if origin else []
        own = self.own_license(doc)
        doc.metadata["license"] = license = own or next(iter(enclosing), licenses.UNKNOWN)
        if licenses.is_copyleft(license):
            return False, "copyleft_license" if own else "copyleft_folder"
        if license == licenses.UNKNOWN and licenses.drops_unknown(self.unknown_policy, enclosing):
            return False, "unknown_license"
        return True


class Scrub(BaseFormatter):
    """Replace personal data and secrets by placeholders (see quark.data.pii)."""

    name = "Scrub PII and secrets"

    def format(self, text: str) -> str:
        counts: Counter[str] = Counter()
        text = scrub(text, counts)
        for label, count in counts.items():
            self.stat_update(f"scrubbed_{label}", value=count)
        return text


class Annotate(PipelineStep):
    """The row fields computed from the final text: code blocks, size, sha256 and the id derived from it."""

    type = "Annotate"
    name = "Code blocks, size, sha256"

    def run(self, data: DocumentsPipeline, rank: int = 0, world_size: int = 1) -> DocumentsPipeline:
        for doc in data:
            with self.track_time():
                digest = hashlib.sha256(doc.text.encode("utf-8")).hexdigest()
                doc.id = digest[:16]
                doc.metadata.update(code_blocks=count_code_blocks(doc.text), chars=len(doc.text), sha256=digest)
            yield doc


class RecordErrors(PipelineStep):
    """Write a reader's QuarkError to `<error_dir>/<rank>.txt` before it propagates.

    Local workers hand exceptions back to the caller, but Ray and Slurm only log them; the file is
    how the command learns which file and line were bad, whatever the executor.
    """

    type = "Guard"
    name = "Record input errors"

    def __init__(self, error_dir: str):
        super().__init__()
        self.error_dir = error_dir

    def run(self, data: DocumentsPipeline, rank: int = 0, world_size: int = 1) -> DocumentsPipeline:
        try:
            yield from data or ()
        except QuarkError as error:
            folder = Path(self.error_dir)
            folder.mkdir(parents=True, exist_ok=True)
            (folder / f"{rank:05d}.txt").write_text(str(error), encoding="utf-8")
            raise
