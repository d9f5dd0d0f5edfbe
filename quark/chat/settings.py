"""Per-conversation settings: what one conversation samples with, over config.toml's [chat].

A conversation may set its own temperature, top_p, top_k, max_tokens, seed and LoRA adapter
(its system prompt has a column of its own, `conversations.system_prompt`). Unset values follow
the home's config, so changing config.toml still changes every conversation that did not choose.
They are stored as a JSON object on the conversation row (migration 7 in quark/db.py) and are
read again for every turn, so they survive a restart and reach scripted chat and the TUI alike.

A value arrives as text from `/set KEY VALUE`, the settings screen or a script, so `parse` turns
text into a checked value and every refusal is one line naming the setting.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from typing import Any

from quark.errors import QuarkError

# The settings a conversation can hold and what each means (the /set help and the settings screen).
DESCRIPTIONS = {
    "temperature": "sampling temperature, 0 is greedy",
    "top_p": "nucleus sampling: keep the smallest set of tokens whose probability reaches top_p, in (0, 1]",
    "top_k": "keep the k most likely tokens (0: no cut)",
    "max_tokens": "longest reply, in tokens",
    "seed": "sampling seed, for reproducible replies",
    "adapter": "LoRA adapter of the model (models/<model>/adapters/<name>)",
}
ALIASES = {"top-p": "top_p", "top-k": "top_k", "max-tokens": "max_tokens", "max": "max_tokens", "temp": "temperature"}


@dataclass(frozen=True)
class ConversationSettings:
    """A conversation's overrides; None means "the home's default"."""

    temperature: float | None = None
    top_p: float | None = None
    top_k: int | None = None
    max_tokens: int | None = None
    seed: int | None = None
    adapter: str | None = None

    @classmethod
    def from_json(cls, text: str | None) -> ConversationSettings:
        data = json.loads(text or "{}")
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})  # a setting a later version dropped is ignored

    def to_json(self) -> str:
        return json.dumps(self.as_dict(), sort_keys=True)

    def as_dict(self) -> dict[str, Any]:
        """Only the values that are set."""
        return {k: v for k, v in dataclasses.asdict(self).items() if v is not None}

    def sampling(self) -> dict[str, Any]:
        """The sampling overrides, as `quark.inference.sampling.sampling_params` takes them."""
        return {k: v for k, v in self.as_dict().items() if k != "adapter"}

    def with_value(self, key: str, value: Any) -> ConversationSettings:
        """These settings with `key` set to `value` (text or a value; None or "" resets it)."""
        key = canonical(key)
        return dataclasses.replace(self, **{key: parse(key, value)})

    def describe(self) -> str:
        """One short line for the status bar: only what this conversation set."""
        short = {"temperature": "temp", "top_p": "top-p", "top_k": "top-k", "max_tokens": "max", "seed": "seed",
                 "adapter": "adapter"}
        return ", ".join(f"{short[k]} {v}" for k, v in self.as_dict().items() if k != "adapter")


def canonical(key: str) -> str:
    name = ALIASES.get(key.strip().lower(), key.strip().lower())
    if name not in DESCRIPTIONS:
        raise QuarkError(f"unknown setting {key!r} (settings: {', '.join(DESCRIPTIONS)}, and system)")
    return name


def parse(key: str, value: Any) -> Any:
    """`value` (text as typed, or already a number) checked for setting `key`; None or "" → None."""
    if value is None or (isinstance(value, str) and value.strip() in ("", "default")):
        return None
    text = str(value).strip()
    if key == "adapter":
        return text
    kind = float if key in ("temperature", "top_p") else int
    try:
        number = kind(text)
    except ValueError:
        expected = "a number" if kind is float else "a whole number"
        raise QuarkError(f"setting {key}: {text!r} is not {expected}") from None
    checks = {"temperature": (number >= 0, "must be >= 0"), "top_p": (0 < number <= 1, "must be in (0, 1]"),
              "top_k": (number >= 0, "must be >= 0"), "max_tokens": (number >= 1, "must be at least 1"),
              "seed": (number >= 0, "must be >= 0")}
    ok, rule = checks[key]
    if not ok:
        raise QuarkError(f"setting {key} = {text}: {rule}")
    return number
