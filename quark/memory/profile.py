"""The user's preference profile: tone, verbosity, style and interests, refreshed every user turn.

Signals are simple and visible: casual or formal markers move a tone score, explicit requests
("be brief", "in detail") set verbosity, code in messages moves a style score, and content words
feed decaying interest counts. The profile is stored as JSON under the `profile` preference and
rendered as one line of the system prompt.
"""

from __future__ import annotations

import re
from typing import Any

from quark.text import content_words

PROFILE_KEY = "profile"
_ALPHA = 0.3  # weight of the newest turn in the moving averages
_INTEREST_DECAY = 0.9
_CASUAL = re.compile(r"\b(lol|haha+|hey|yeah|yep|nope|gonna|wanna|gotta|cool|awesome|btw|thx|pls)\b|!|"
                     r"[\U0001F300-\U0001FAFF]", re.IGNORECASE)
_FORMAL = re.compile(r"\b(please|could you|would you|kindly|thank you|regards|dear|i would appreciate)\b",
                     re.IGNORECASE)
_CONCISE = re.compile(r"\b(be (brief|short|concise)|shorter|concisely|tl;?dr|in short|one line|keep it short)\b",
                      re.IGNORECASE)
_DETAILED = re.compile(r"\b(in (more )?detail|elaborate|explain more|more detail|step by step|thorough(ly)?|"
                       r"go deeper)\b", re.IGNORECASE)
_CODE = re.compile(r"```|`[^`]+`|\b\w+\.(py|js|ts|rs|go|toml|json)\b|\bdef |\bclass |\w+\(\)")
_LISTS = re.compile(r"\b(bullet points?|as a list|in a list|numbered list)\b", re.IGNORECASE)


def empty_profile() -> dict[str, Any]:
    return {"tone": "neutral", "verbosity": "normal", "style": "prose", "interests": [], "turns": 0,
            "scores": {"tone": 0.0, "code": 0.0}, "interest_counts": {}}


def update_profile(profile: dict[str, Any] | None, text: str) -> dict[str, Any]:
    """The profile after one more user message (a new dict; the input is not modified)."""
    base = empty_profile()
    base.update(profile or {})
    scores = {**empty_profile()["scores"], **base["scores"]}
    tone_signal = len(_CASUAL.findall(text)) - len(_FORMAL.findall(text))
    scores["tone"] = (1 - _ALPHA) * scores["tone"] + _ALPHA * max(-1.0, min(1.0, float(tone_signal)))
    scores["code"] = (1 - _ALPHA) * scores["code"] + _ALPHA * (1.0 if _CODE.search(text) else 0.0)

    verbosity = base["verbosity"]
    if _CONCISE.search(text):
        verbosity = "concise"
    elif _DETAILED.search(text):
        verbosity = "detailed"

    style = base["style"]
    if _LISTS.search(text):
        style = "lists"
    elif scores["code"] > 0.4:
        style = "code"
    elif style == "code":
        style = "prose"

    counts = {word: n * _INTEREST_DECAY for word, n in base["interest_counts"].items()}
    for word in content_words(text, min_length=4):
        counts[word] = counts.get(word, 0.0) + 1.0
    counts = dict(sorted(counts.items(), key=lambda kv: -kv[1])[:50])
    interests = [w for w, n in counts.items() if n >= 1.5][:5]

    tone = "casual" if scores["tone"] > 0.25 else "formal" if scores["tone"] < -0.25 else "neutral"
    return {"tone": tone, "verbosity": verbosity, "style": style, "interests": interests,
            "turns": int(base["turns"]) + 1, "scores": scores, "interest_counts": counts}


def describe(profile: dict[str, Any] | None) -> str:
    """One line for the system prompt, or '' before the first turn."""
    if not profile or not profile.get("turns"):
        return ""
    line = f"User profile: tone {profile['tone']}, verbosity {profile['verbosity']}, style {profile['style']}"
    if profile.get("interests"):
        line += ", interests: " + ", ".join(profile["interests"])
    return line + "."
