"""Labelled turns for the router: synthetic ones made from local templates, and the user's JSONL.

Every synthetic turn is a template filled with a topic, so the generator needs no network and no
model. The held-out split keeps whole templates out of training (every fourth template of each
label), so its accuracy measures phrasings the head never saw rather than memorised sentences.

User data is JSONL, one turn a line, checked line by line before any training:

    {"text": "write a function that parses dates", "label": "code"}
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path

from quark.errors import QuarkError
from quark.jsonl import field, read_jsonl

LABELS = ("general", "code", "image", "mesh", "needs-retrieval")
FALLBACK = "general"  # the generalist answers whatever the router is unsure of

_TEMPLATES: dict[str, list[str]] = {
    "general": [
        "hi, how are you doing today?", "can you help me write a {doc} about {life}?",
        "what do you think about {life}?", "give me some advice on {life}", "tell me a joke about {animal}s",
        "rewrite this {doc} so it sounds friendlier", "I feel stressed about {life}, any tips?",
        "summarise our chat so far", "thanks, that was helpful", "suggest a name for my {animal}",
        "help me plan a weekend of {life}", "write a short poem about {animal}s and {life}",
        "how should I reply to this {doc} from my boss?", "let's brainstorm ideas for {life}",
        "translate 'good morning' into French", "can you make this {doc} shorter?",
    ],
    "code": [
        "write a {lang} function that {task}", "fix this {lang} bug: {error}", "why does my {lang} code raise {error}?",
        "refactor this {lang} class to {task}", "write unit tests for a {lang} function that {task}",
        "how do I {task} in {lang}?", "my script crashes with {error}, here is the traceback",
        "implement a {algo} in {lang}", "explain this {lang} snippet: def f(x): return x * 2",
        "optimise my {algo} implementation in {lang}", "the test fails with {error} after I {task}",
        "review my pull request that adds a {algo}", "write a {lang} script to {task}",
        "convert this loop to a list comprehension in {lang}", "debug my {algo}: it returns the wrong index",
        "what is the time complexity of my {algo} code?",
    ],
    "image": [
        "draw a picture of a {animal} {scene}", "generate an image of {scene}",
        "paint a {style} portrait of a {animal}",
        "make a {style} illustration of {scene}", "create a photo-realistic image of a {animal} {scene}",
        "I want a wallpaper showing {scene} in {style} style", "sketch a {animal} {scene}",
        "render a {style} poster of {scene}", "show me a picture of {scene}",
        "design a logo with a {animal} in {style} colours", "generate artwork of a {animal}, {style}",
        "an image please: {scene}, {style}", "make me a drawing of {scene} with soft lighting",
        "create a {style} painting of a {animal} {scene}", "picture of a {animal} {scene}, high detail",
        "illustrate a children's book page: a {animal} {scene}",
    ],
    "mesh": [
        "model a 3D {object} for my game", "make a low-poly mesh of a {object}", "build a 3D {object} I can print",
        "create a mesh of a {object} with {n} legs", "export a {object} as an STL file",
        "generate a 3D model of a {object}",
        "design a printable {object} with rounded edges", "make a voxel {object} for a scene",
        "sculpt a {object} and give me the OBJ", "I need a 3D asset: a {object} with {n} holes",
        "make a 3D scene with a {object} on a table", "build a mesh for a {object}, {n} centimetres tall",
        "create a CAD model of a {object}", "make a watertight mesh of a {object}",
        "model a simple {object} out of cubes and cylinders", "3D print file for a {object} please",
    ],
    "needs-retrieval": [
        "what did the {doc} I uploaded say about {fact}?", "according to my notes, when is {fact}?",
        "look up {fact} in the documents", "what is the population of {place}?",
        "who was the first president of {place}?",
        "when was {place} founded?", "find the section on {fact} in the manual", "what year did {event} happen?",
        "search my files for {fact}", "what does the report say about {fact}?",
        "how tall is the tallest building in {place}?",
        "cite the source for {fact}", "what is the capital of {place}?", "when did {event} end?",
        "quote the paragraph about {fact} from the {doc}", "what are the opening hours of the museum in {place}?",
    ],
}

_FILLERS: dict[str, list[str]] = {
    "doc": ["email", "letter", "speech", "report", "essay", "pdf", "contract", "wiki page"],
    "life": ["moving house", "a job interview", "learning to cook", "running a marathon", "saving money",
             "a birthday party", "sleeping better", "travelling alone"],
    "animal": ["cat", "dog", "fox", "owl", "horse", "dragon", "penguin", "rabbit"],
    "lang": ["Python", "Rust", "JavaScript", "Go", "C++", "Java", "TypeScript", "bash"],
    "task": ["parses dates", "reads a CSV file", "sorts a list of dicts", "retries failed HTTP requests",
             "removes duplicates", "validates email addresses", "merges two dictionaries", "counts words in a file"],
    "error": ["KeyError", "IndexError", "a segfault", "TypeError: 'NoneType' object is not iterable",
              "a borrow checker error", "a null pointer exception", "an infinite loop", "ImportError"],
    "algo": ["binary search", "quicksort", "linked list", "hash map", "Dijkstra's algorithm", "LRU cache",
             "trie", "merge sort"],
    "scene": ["in a misty forest", "on the moon", "at sunset by the sea", "in a neon city at night",
              "under a waterfall", "in a snowy village", "in a field of sunflowers", "on a pirate ship"],
    "style": ["watercolour", "oil painting", "anime", "pixel art", "cyberpunk", "impressionist", "pencil", "vintage"],
    "object": ["chair", "teapot", "vase", "table", "gear", "house", "bottle opener", "phone stand"],
    "n": ["three", "four", "six", "two", "eight", "five", "ten", "twelve"],
    "fact": ["the refund policy", "the project deadline", "the meeting with Anna", "the budget for Q3",
             "the warranty", "the API rate limits", "the holiday schedule", "the safety rules"],
    "place": ["France", "Japan", "Brazil", "Kenya", "Canada", "Norway", "India", "Peru"],
    "event": ["the French Revolution", "the first moon landing", "the fall of the Berlin Wall", "World War I",
              "the Apollo programme", "the Renaissance", "the Cold War", "the Olympic games in Athens"],
}


@dataclass(frozen=True)
class Turn:
    text: str
    label: str


def synthetic_turns(per_label: int = 120, *, seed: int = 0) -> tuple[list[Turn], list[Turn]]:
    """(train, held_out): `per_label` turns of each label, shuffled; held-out turns come from
    templates the training turns never use (about a quarter of them, and as many turns per label
    in proportion)."""
    rng = random.Random(seed)
    train: list[Turn] = []
    held: list[Turn] = []
    for label in LABELS:
        templates = _TEMPLATES[label]
        for index, template in enumerate(templates):
            target = held if index % 4 == 3 else train
            count = max(1, per_label // len(templates))
            seen: set[str] = set()
            for _ in range(count * 4):  # a few tries per slot: small templates have few distinct fillings
                if len(seen) == count:
                    break
                text = _fill(template, rng)
                if text not in seen:
                    seen.add(text)
                    target.append(Turn(text, label))
    rng.shuffle(train)
    rng.shuffle(held)
    return train, held


def _fill(template: str, rng: random.Random) -> str:
    values = {key: rng.choice(options) for key, options in _FILLERS.items()}
    return template.format(**values)


def read_turns(path: Path) -> list[Turn]:
    """Labelled turns from JSONL ({"text": ..., "label": ...}); the first bad line is a QuarkError
    naming the file and line."""
    turns = []
    for number, row in read_jsonl(path):
        text = field(path, number, row, "text", str)
        label = field(path, number, row, "label", str)
        if not text.strip():
            raise QuarkError(f"{path}:{number}: field 'text' is empty")
        if label not in LABELS:
            raise QuarkError(f"{path}:{number}: unknown label {label!r} (expected one of {', '.join(LABELS)})")
        turns.append(Turn(text, label))
    if not turns:
        raise QuarkError(f"{path}: no labelled turns")
    return turns
