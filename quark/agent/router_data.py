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

# Wordings only the training split uses, so the held-out templates above stay unseen. They widen
# the vocabulary of each label (greetings, chores, other verbs of making, other ways of asking for
# a fact) without copying a held-out template's wording.
_TRAIN_ONLY_TEMPLATES: dict[str, list[str]] = {
    "general": [
        "hello there!", "good evening, what's up?", "what's a quick recipe for a rainy day?",
        "recommend a good book to read while {life}", "I'm bored, talk to me about {animal}s",
        "explain to a child why {animal}s sleep so much", "proofread my {doc} for typos",
        "help me say sorry to a friend in a {doc}", "what's a fun fact about {animal}s?",
        "how do I stay calm before {life}?", "help me write a {doc} to a colleague who is leaving",
        "could you cheer me up?", "what are some hobbies I could try?", "tell me a story about a {animal}",
        "help me decide between two gifts for {life}", "ok, sounds good", "what's your favourite colour?",
        "draft a polite {doc} declining an invitation", "I'd like tips on {life} for a beginner",
    ],
    "code": [
        "my {lang} program throws {error}, what's wrong?", "add type hints to this {lang} function",
        "write a function in {lang} that {task}", "can you fix this {lang} code? it gives {error}",
        "write a {algo} in {lang} with tests", "why is my {algo} so slow in {lang}?",
        "getting {error} when I run my {lang} tests", "code a {lang} class for a {algo}",
        "load a YAML config in {lang} and {task}", "show me {lang} code that {task}",
        "compile error in my {lang} project: {error}", "write a regex in {lang} that {task}",
        "port this {algo} from Python to {lang}", "add logging to my {lang} function that {task}",
        "write a SQL query that {task}", "make this {lang} function faster: it {task}",
        "how can I split a string in {lang}?", "what does this {lang} stack trace mean: {error}",
    ],
    "image": [
        "draw a {animal} running {scene}", "paint {scene} in {style} style",
        "I'd like an image of a {animal} {scene}",
        "create a {style} image of a {animal}", "make a picture: a {animal} {scene}",
        "draw me {scene}, {style}", "can you paint my {animal} in {style}?",
        "a {style} drawing of a {animal} please", "produce an image showing {scene}",
        "generate a profile picture of a {animal} in {style} style", "paint a landscape {scene}",
        "create a book cover image: a {animal} {scene}", "photo of a {animal} {scene}",
        "make a {style} artwork of {scene}", "draw a cartoon {animal} {scene}",
    ],
    "mesh": [
        "model a {object} in 3D", "make a 3D {object} I can open in Blender",
        "I need a printable {object}, {n} centimetres wide", "create a 3D {object} with {n} sides",
        "generate a low-poly {object} for a game level", "export my {object} model as OBJ",
        "build a 3D printable {object} with {n} slots", "make a {object} mesh with smooth edges",
        "3D model of a {object} please", "give me an STL of a {object}",
        "model a {object} with {n} holes for 3D printing", "create a game-ready 3D {object}",
        "design a 3D {object} made of {n} parts", "make a triangle mesh of a {object}",
        "turn a {object} into a 3D model", "I want to 3D print a {object}",
    ],
    "needs-retrieval": [
        "what is the capital city of {place}?", "who founded {place}?", "when did {event} start?",
        "does the {doc} mention {fact}?", "pull up {fact} from my notes",
        "go through the documents and find {fact}", "how many people live in {place}?",
        "what is the official language of {place}?", "find {fact} in the {doc} I shared",
        "which country won {event}?", "according to the {doc}, what is {fact}?",
        "what currency does {place} use?", "who led {place} during {event}?",
        "check my files: when is {fact}?", "what's the highest mountain in {place}?",
        "give me the exact wording of {fact} in the {doc}",
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
            target.extend(Turn(text, label) for text in _distinct_fillings(template, count, rng))
    for label in LABELS:  # after the held-out turns are drawn, so widening training never changes them
        count = max(1, per_label // len(_TEMPLATES[label]))
        for template in _TRAIN_ONLY_TEMPLATES[label]:
            train.extend(Turn(text, label) for text in _distinct_fillings(template, count, rng))
    rng.shuffle(train)
    rng.shuffle(held)
    return train, held


def _distinct_fillings(template: str, count: int, rng: random.Random) -> list[str]:
    """Up to `count` distinct fillings of `template`, in the order drawn; a few tries per slot,
    since a template with few {fields} has few distinct fillings."""
    seen: dict[str, None] = {}
    for _ in range(count * 4):
        if len(seen) == count:
            break
        seen.setdefault(_fill(template, rng))
    return list(seen)


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
