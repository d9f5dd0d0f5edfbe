"""The filters `quark data filter` applies to an existing dataset, as datatrove blocks.

Each drops a document with one named reason (the datatrove stat `dropped_<reason>` the summary
adds up): `too_short`, `too_long`, `language`, `license_denied`, and the toxicity scorer's
`toxic_<category>` and `profanity` (quark.data.toxicity). A FilterSpec says which run, and
is what the output's manifest records.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from fnmatch import fnmatchcase
from pathlib import Path
from typing import Any

from datatrove.data import Document
from datatrove.pipeline.filters.base_filter import BaseFilter

from quark.errors import QuarkError


@dataclass(frozen=True)
class FilterSpec:
    min_chars: int | None = None
    max_chars: int | None = None
    languages: tuple[str, ...] = ()          # keep only these (`python`, `en`, ...); empty keeps all
    license_deny: tuple[str, ...] = ()       # SPDX globs to drop (`GPL-*`, `unknown`)
    toxicity: float | None = None            # drop at or above this score (quark.data.toxicity)
    profanity: bool = False                  # drop any document with a profanity term
    toxicity_terms: str | None = None        # a word list of one's own instead of the shipped one

    def __post_init__(self) -> None:
        for name in ("min_chars", "max_chars"):
            if (value := getattr(self, name)) is not None and value < 0:
                raise QuarkError(f"--{name.replace('_', '-')} must be 0 or more, got {value}")
        if self.min_chars is not None and self.max_chars is not None and self.min_chars > self.max_chars:
            raise QuarkError(f"--min-chars {self.min_chars} is above --max-chars {self.max_chars}")
        if self.toxicity is not None and not 0 < self.toxicity <= 1:
            raise QuarkError(f"--toxicity must be a score in (0, 1], got {self.toxicity}")
        if self.toxicity_terms is not None:
            from quark.data.toxicity import load_lexicon

            load_lexicon(Path(self.toxicity_terms))  # a bad list fails here, before any work
        if not self.active:
            raise QuarkError("nothing to filter by: give --min-chars, --max-chars, --lang, --licence-deny, "
                             "--toxicity or --profanity")

    @property
    def active(self) -> bool:
        return any((self.min_chars is not None, self.max_chars is not None, self.languages, self.license_deny,
                    self.toxicity is not None, self.profanity))

    def describe(self) -> dict[str, Any]:
        return {key: list(value) if isinstance(value, tuple) else value for key, value in asdict(self).items()}

    def blocks(self) -> list[BaseFilter]:
        from quark.data.toxicity import ToxicityFilter

        blocks: list[BaseFilter] = []
        if self.min_chars is not None or self.max_chars is not None:
            blocks.append(LengthFilter(self.min_chars, self.max_chars))
        if self.languages:
            blocks.append(LanguageFilter(self.languages))
        if self.license_deny:
            blocks.append(LicenseDenyFilter(self.license_deny))
        if self.toxicity is not None or self.profanity:
            blocks.append(ToxicityFilter(self.toxicity, self.profanity, self.toxicity_terms))
        return blocks


class LengthFilter(BaseFilter):
    name = "Length"

    def __init__(self, min_chars: int | None, max_chars: int | None):
        super().__init__()
        self.min_chars, self.max_chars = min_chars, max_chars

    def filter(self, doc: Document) -> bool | tuple[bool, str]:
        size = len(doc.text)
        if self.min_chars is not None and size < self.min_chars:
            return False, "too_short"
        if self.max_chars is not None and size > self.max_chars:
            return False, "too_long"
        return True


class LanguageFilter(BaseFilter):
    """Keep the documents whose `language` (set at ingest) is one of `languages`."""

    name = "Language"

    def __init__(self, languages: tuple[str, ...]):
        super().__init__()
        self.languages = frozenset(language.lower() for language in languages)

    def filter(self, doc: Document) -> bool | tuple[bool, str]:
        return True if str(doc.metadata.get("language", "")).lower() in self.languages else (False, "language")


class LicenseDenyFilter(BaseFilter):
    """Drop documents whose licence matches one of the SPDX globs (case-insensitive)."""

    name = "Licence deny list"

    def __init__(self, patterns: tuple[str, ...]):
        super().__init__()
        self.patterns = tuple(pattern.lower() for pattern in patterns)

    def filter(self, doc: Document) -> bool | tuple[bool, str]:
        license = str(doc.metadata.get("license", "unknown")).lower()
        return (False, "license_denied") if any(fnmatchcase(license, p) for p in self.patterns) else True
