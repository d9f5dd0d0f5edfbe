"""The prompt filter that runs before any image is generated, configured in the home's config.toml:

    [image]
    safety_filter = true            # on by default; false turns the filter off
    deny = ["gore", "nude", …]      # words and phrases refused (replaces the built-in list)
    deny_extra = ["my-word"]        # added to the list in force

A prompt is refused when it contains a denied word or phrase as whole words, case-insensitively
(so "scarlet" is not refused for "scar"). The refusal is a QuarkError naming the term and where
the list lives. The pipeline's optional `safety_checker` slot (diffusers' convention, flags in
`nsfw_content_detected`) is the second line, for checkers that look at pixels.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import tomllib

from quark.errors import QuarkError

DEFAULT_DENY = ("nsfw", "nude", "nudity", "naked", "porn", "pornographic", "explicit sex", "sexual", "gore", "gory",
                "beheading", "dismembered", "child abuse", "self-harm", "suicide")


class PromptRefused(QuarkError):
    """A prompt the filter refuses (servers answer it as a content-policy error)."""


@dataclass(frozen=True)
class PromptFilter:
    terms: tuple[str, ...] = DEFAULT_DENY
    enabled: bool = True
    source: str = "the built-in list"

    def refusal(self, text: str) -> str | None:
        """The first denied term `text` contains, or None."""
        if not self.enabled:
            return None
        lowered = " ".join(text.lower().split())
        for term in self.terms:
            if re.search(rf"(?<![\w-]){re.escape(term.lower())}(?![\w-])", lowered):
                return term
        return None

    def check(self, prompt: str) -> None:
        term = self.refusal(prompt)
        if term is not None:
            raise PromptRefused(f"prompt refused by the image safety filter: it contains {term!r} "
                             f"(deny list: {self.source}; [image] in config.toml)")


def load_filter(config_path: Path) -> PromptFilter:
    """The filter configured in config.toml's [image] table; defaults when there is none."""
    path = Path(config_path)
    if not path.is_file():
        return PromptFilter()
    try:
        table = tomllib.loads(path.read_text(encoding="utf-8")).get("image", {})
    except tomllib.TOMLDecodeError as exc:
        raise QuarkError(f"{path}: {exc}") from None
    if not isinstance(table, dict):
        raise QuarkError(f"{path}: [image] must be a table")
    known = {"safety_filter", "deny", "deny_extra"}
    for key in table:
        if key not in known:
            raise QuarkError(f"{path}: unknown key image.{key} (known: {', '.join(sorted(known))})")
    enabled = table.get("safety_filter", True)
    if not isinstance(enabled, bool):
        raise QuarkError(f"{path}: image.safety_filter = {enabled!r} should be true or false")
    terms = list(DEFAULT_DENY)
    for key in ("deny", "deny_extra"):
        value = table.get(key)
        if value is None:
            continue
        if not isinstance(value, list) or not all(isinstance(t, str) and t.strip() for t in value):
            raise QuarkError(f"{path}: image.{key} should be a list of non-empty strings")
        terms = [t.strip() for t in value] if key == "deny" else terms + [t.strip() for t in value]
    source = f"{path}" if "deny" in table or "deny_extra" in table else "the built-in list"
    return PromptFilter(tuple(terms), enabled, source)
