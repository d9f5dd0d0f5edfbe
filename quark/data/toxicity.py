"""A local, auditable toxicity scorer for general text: a shipped, weighted word list, no model hub.

`score(text)` finds the list's terms (toxicity_terms.tsv documents the format and the weighting),
combines their weights as independent evidence, 1 - prod(1 - weight), and names the category that
contributed most. A word list is a blunt tool (it misses sarcasm and flags quotation), but every
decision it makes can be read back from `Score.matches`, and a user can swap in their own list.
`ToxicityFilter` is the datatrove block `quark data filter --toxicity T --profanity` runs.
"""

from __future__ import annotations

import functools
import math
import re
from collections import Counter
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from datatrove.data import Document
from datatrove.pipeline.filters.base_filter import BaseFilter

from quark.errors import QuarkError
from quark.inputs import MiB, read_text_file

CATEGORIES = ("profanity", "insult", "threat", "hate")
DEFAULT_THRESHOLD = 0.5
MAX_COUNT = 2  # occurrences of one term that add evidence: a long rant does not outscore a threat


@dataclass(frozen=True)
class Term:
    text: str
    category: str
    weight: float


@dataclass(frozen=True)
class Score:
    score: float                      # in [0, 1)
    category: str | None              # the category with the most weight, None when nothing matched
    matches: dict[str, int]           # term -> occurrences


@dataclass(frozen=True)
class Lexicon:
    terms: dict[str, Term]
    pattern: re.Pattern[str]

    @classmethod
    def parse(cls, text: str, where: str) -> Lexicon:
        terms: dict[str, Term] = {}
        for number, line in enumerate(text.splitlines(), start=1):
            if not line.strip() or line.startswith("#"):
                continue
            fields = line.split("\t")
            try:
                term, category, weight = fields[0].strip().lower(), fields[1].strip(), float(fields[2])
            except (IndexError, ValueError):
                raise QuarkError(f"{where}:{number}: expected TERM<TAB>CATEGORY<TAB>WEIGHT, got {line!r}") from None
            if category not in CATEGORIES or not 0 < weight <= 1 or not term.strip("*"):
                raise QuarkError(f"{where}:{number}: category must be one of {', '.join(CATEGORIES)} and weight in "
                                 f"(0, 1], got {category!r} {weight}")
            terms[term] = Term(term, category, weight)
        if not terms:
            raise QuarkError(f"{where}: no terms")
        # longest first, so a phrase wins over a word it contains
        alternatives = sorted(terms, key=len, reverse=True)
        pattern = "|".join(_term_regex(term) for term in alternatives)
        return cls(terms, re.compile(rf"(?<!\w)(?:{pattern})(?!\w)", re.IGNORECASE))

    def term_of(self, matched: str) -> Term:
        word = " ".join(matched.lower().split())
        if word in self.terms:
            return self.terms[word]
        return next(term for key, term in self.terms.items()
                    if key.endswith("*") and word.startswith(key[:-1]))

    def score(self, text: str) -> Score:
        counts = Counter(self.term_of(match.group(0)).text for match in self.pattern.finditer(text))
        if not counts:
            return Score(0.0, None, {})
        keep = 1.0
        by_category: Counter[str] = Counter()
        for key, count in counts.items():
            term = self.terms[key]
            keep *= (1 - term.weight) ** min(count, MAX_COUNT)
            by_category[term.category] += -math.log1p(-min(term.weight, 0.999)) * min(count, MAX_COUNT)
        return Score(round(1 - keep, 4), by_category.most_common(1)[0][0], dict(counts))


def _term_regex(term: str) -> str:
    stem, wildcard = (term[:-1], r"\w*") if term.endswith("*") else (term, "")
    return r"\s+".join(map(re.escape, stem.split())) + wildcard


@functools.lru_cache(maxsize=1)
def default_lexicon() -> Lexicon:
    text = resources.files("quark.data").joinpath("toxicity_terms.tsv").read_text(encoding="utf-8")
    return Lexicon.parse(text, "toxicity_terms.tsv")


def load_lexicon(path: Path | None) -> Lexicon:
    if path is None:
        return default_lexicon()
    return Lexicon.parse(read_text_file(path, "word list", max_bytes=16 * MiB), str(path))


def score(text: str) -> Score:
    """Score `text` with the shipped list."""
    return default_lexicon().score(text)


class ToxicityFilter(BaseFilter):
    """Drop documents scoring at or above `threshold` as `toxic_<category>`, and with `profanity`
    any document with a profanity term as `profanity`."""

    name = "Toxicity"

    def __init__(self, threshold: float | None, profanity: bool, terms_file: str | None = None):
        super().__init__()
        self.threshold, self.profanity, self.terms_file = threshold, profanity, terms_file

    @functools.cached_property
    def lexicon(self) -> Lexicon:
        return load_lexicon(Path(self.terms_file) if self.terms_file else None)

    def filter(self, doc: Document) -> bool | tuple[bool, str]:
        result = self.lexicon.score(doc.text)
        doc.metadata["toxicity"] = result.score
        if self.threshold is not None and result.score >= self.threshold:
            return False, f"toxic_{result.category}"
        if self.profanity and any(self.lexicon.terms[term].category == "profanity" for term in result.matches):
            return False, "profanity"
        return True
