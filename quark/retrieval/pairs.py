"""Retrieval training pairs: (query, positive passage, optional hard negatives), from JSONL or built
in from what every Python install carries.

    {"query": "...", "positive": "...", "negatives": ["...", ...], "group": "..."}   # last two optional

(`group`: pairs about the same thing, e.g. one function; a passage of the pair's own group is
never mined as its negative.)

Built-in (`stdlib_pairs`), three kinds, so the model learns both code and prose retrieval:
- doc-source:     a function's docstring summary → its source with the docstring removed (a
                  query must not find its passage by copying words out of it);
- signature-doc:  `module.name(signature)` → the docstring summary;
- topic-section:  a documentation topic's heading, or a question about it → the section's text.
The held-out split is by group (the function or topic), as in quark.data.synth, so no function is on
both sides. These come from a core of modules (DEFAULT_MODULES) and the doc topics; `wider_pairs`
adds, to the training side only, the same two function kinds from the rest of the standard library
(every other module's functions, every module's class methods: ~9 times the core's training pairs),
none sharing a group or a text with the held-out pairs. Hard negatives are mined by BM25
(`mine_negatives`): the best-scoring passage that is not the positive, which is what a lexical
first stage would wrongly put on top.
"""

from __future__ import annotations

import ast
import json
import random
import re
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import sqlean as sqlite3

from quark.atomic import atomic_dir
from quark.data.stdlib import collect_methods, stdlib_modules
from quark.data.synth import DEFAULT_MODULES, Function, collect_functions, in_validation
from quark.errors import QuarkError
from quark.jsonl import field as row_field
from quark.jsonl import read_jsonl

TOPIC_CHARS = 700  # a topic section's passage: its opening, as an index chunk would hold it
QUESTION_TEMPLATES = ("What does the section \"{title}\" say?", "Where is {title} explained?",
                      "{title}", "Explain {title} in Python.")


@dataclass(frozen=True)
class TextPair:
    query: str
    positive: str
    negatives: tuple[str, ...] = ()
    group: str = ""
    kind: str = "pair"

    def to_dict(self) -> dict:
        row = {"query": self.query, "positive": self.positive}
        if self.negatives:
            row["negatives"] = list(self.negatives)
        return row


def read_text_pairs(path: Path) -> list[TextPair]:
    """Every row of a pairs JSONL file, checked; a bad row is a one-line error naming its line."""
    pairs = []
    for number, row in read_jsonl(path):
        query = row_field(path, number, row, "query", str)
        positive = row_field(path, number, row, "positive", str)
        negatives = row_field(path, number, row, "negatives", list, default=[])
        if not query.strip() or not positive.strip():
            raise QuarkError(f"{path}:{number}: 'query' and 'positive' must not be empty")
        if not all(isinstance(n, str) for n in negatives):
            raise QuarkError(f"{path}:{number}: field 'negatives' must be a list of strings")
        group = row_field(path, number, row, "group", str, default=f"line-{number}")
        pairs.append(TextPair(query, positive, tuple(negatives), group=group, kind=str(row.get("kind", "pair"))))
    if not pairs:
        raise QuarkError(f"{path}: no pairs (the file is empty)")
    return pairs


def strip_docstring(source: str) -> str:
    """A function's source without its docstring (the source unchanged when it does not parse)."""
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return source
    node = tree.body[0] if tree.body else None
    if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)) or not node.body:
        return source
    first = node.body[0]
    if not (isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant)
            and isinstance(first.value.value, str)):
        return source
    lines = source.splitlines(keepends=True)
    kept = lines[:first.lineno - 1] + lines[first.end_lineno:]
    return "".join(kept) if len(node.body) > 1 else "".join(kept) + " " * first.col_offset + "...\n"


def topic_sections() -> list[tuple[str, str, str]]:
    """(key, heading, section text) for each documentation topic with a heading and a body."""
    import pydoc_data.topics

    out = []
    for key in sorted(pydoc_data.topics.topics):
        text = pydoc_data.topics.topics[key].strip()
        title, _, body = text.partition("\n")
        body = body.lstrip("*=\n ").strip()
        if title.strip() and len(body) > 80:
            out.append((key, title.strip(), body[:TOPIC_CHARS]))
    return out


def function_pairs(functions: Iterable[Function]) -> Iterator[TextPair]:
    """A function's signature-doc pair, and its doc-source pair when its source is known."""
    for f in functions:
        yield TextPair(f"{f.qualname}{f.signature}", f.summary, group=f.qualname, kind="signature-doc")
        if f.source:
            code = strip_docstring(f.source)
            if code.strip():
                yield TextPair(f.summary, code, group=f.qualname, kind="doc-source")


def stdlib_pairs(seed: int = 0, modules: Sequence[str] = DEFAULT_MODULES) -> list[TextPair]:
    """The built-in pairs (see the module docstring), deterministic for a seed."""
    rng = random.Random(seed)
    pairs = list(function_pairs(collect_functions(modules)))
    for key, title, section in topic_sections():
        query = rng.choice(QUESTION_TEMPLATES).format(title=title)
        pairs.append(TextPair(query, section, group=f"topic:{key}", kind="topic-section"))
    rng.shuffle(pairs)
    return pairs


def wider_pairs(held_out: Sequence[TextPair], seed: int = 0) -> list[TextPair]:
    """Training pairs from the rest of the standard library: the functions of every module outside
    DEFAULT_MODULES and the methods of every module's classes (quark.data.stdlib), ~9 times the
    core's training pairs. None shares a group or any text (query or passage) with `held_out`, so
    adding them to the training side leaves the held-out evaluation as it was: nothing it asks or
    ranks was trained on under another name (posix.stat's docstring is os.stat's, ntpath's are posixpath's).
    Each text pair once; deterministic for a seed."""
    modules = stdlib_modules()
    functions = collect_functions([m for m in modules if m not in DEFAULT_MODULES]) + collect_methods(modules)
    groups = {p.group for p in held_out}
    texts = {t for p in held_out for t in (p.query, p.positive)}
    seen: set[tuple[str, str]] = set()
    out = []
    for pair in function_pairs(functions):
        key = (pair.query, pair.positive)
        if pair.group in groups or pair.query in texts or pair.positive in texts or key in seen:
            continue
        seen.add(key)
        out.append(pair)
    random.Random(seed).shuffle(out)
    return out


def split(pairs: Iterable[TextPair], seed: int, fraction: float) -> tuple[list[TextPair], list[TextPair]]:
    """(train, held out), by a hash of each pair's group."""
    train, val = [], []
    for p in pairs:
        (val if in_validation(p.group, seed, fraction) else train).append(p)
    return train, val


def bm25_ranking(queries: Sequence[str], passages: Sequence[str], k: int) -> list[list[int]]:
    """For each query, the indices of its top-k passages by SQLite FTS5's BM25 (porter stemming,
    every content word OR-ed), best first; the same first stage the document index uses."""
    from quark.retrieval.hybrid import fts_query

    conn = sqlite3.connect(":memory:")
    conn.execute("CREATE VIRTUAL TABLE p USING fts5(text, tokenize='porter unicode61')")
    conn.executemany("INSERT INTO p(rowid, text) VALUES (?, ?)", enumerate(passages))
    out = []
    for query in queries:
        match = fts_query(query)
        rows = conn.execute("SELECT rowid FROM p WHERE p MATCH ? ORDER BY rank LIMIT ?",
                            (match, k)).fetchall() if match else []
        out.append([r[0] for r in rows])
    conn.close()
    return out


def mine_negatives(pairs: Sequence[TextPair], count: int, *, seed: int = 0) -> list[TextPair]:
    """Each pair with `count` negatives: its given ones, then the BM25-best other positives, then
    random other positives (so every pair has exactly `count`). A passage of the pair's own group
    (the same function's docstring, say) or equal to its query is never its negative: it would be
    a false one."""
    if count <= 0:
        return list(pairs)
    passages = list(dict.fromkeys(p.positive for p in pairs))
    if len(passages) < 2:
        raise QuarkError("mining negatives needs at least two distinct positive passages")
    groups: dict[str, set[str]] = {}
    for p in pairs:
        groups.setdefault(p.positive, set()).add(p.group)
    ranked = bm25_ranking([p.query for p in pairs], passages, count + 8)
    rng = random.Random(seed)
    out = []
    for pair, candidates in zip(pairs, ranked):
        def allowed(text: str, pair: TextPair = pair) -> bool:
            return (text != pair.positive and text != pair.query
                    and not (pair.group and pair.group in groups.get(text, ())))

        chosen = [n for n in pair.negatives if n != pair.positive][:count]
        for index in candidates:
            if len(chosen) >= count:
                break
            if allowed(passages[index]) and passages[index] not in chosen:
                chosen.append(passages[index])
        for _ in range(100 * count):
            if len(chosen) >= count:
                break
            other = rng.choice(passages)
            if allowed(other):
                chosen.append(other)
        while len(chosen) < count:  # every passage is the pair's own: any other will do
            chosen.append(next(t for t in passages if t != pair.positive))
        out.append(TextPair(pair.query, pair.positive, tuple(chosen), pair.group, pair.kind))
    return out


def write_pairs(folder: Path, *, seed: int = 0, val_fraction: float = 0.2, wider: bool = True) -> dict:
    """The built-in pairs as `train.jsonl`, `val.jsonl` and `meta.json` in `folder` (atomically):
    the core set split by group, and with `wider` the rest of the standard library
    (`wider_pairs`) added to the training side only, after the core's (meta's `core_train` counts
    those), so the held-out pairs are the same either way."""
    if not 0 < val_fraction < 1:
        raise QuarkError(f"validation fraction must be between 0 and 1, got {val_fraction}")
    train, val = split(stdlib_pairs(seed), seed, val_fraction)
    core = len(train)
    if wider:
        train += wider_pairs(val, seed)
    kinds: dict[str, int] = {}
    with atomic_dir(Path(folder)) as tmp:
        for name, rows in (("train", train), ("val", val)):
            with open(tmp / f"{name}.jsonl", "w", encoding="utf-8") as handle:
                for p in rows:
                    kinds[p.kind] = kinds.get(p.kind, 0) + 1
                    row = {**p.to_dict(), "kind": p.kind, "group": p.group}
                    handle.write(json.dumps(row, ensure_ascii=False) + "\n")
        meta = {"format": "pairs", "builtin": "stdlib" if wider else "stdlib-core", "seed": seed,
                "val_fraction": val_fraction,
                "counts": {"train": len(train), "val": len(val), "core_train": core}, "kinds": kinds}
        (tmp / "meta.json").write_text(json.dumps(meta, indent=2))
    return meta


# --- corrupted twins (for the reranker) -------------------------------------------------------

TOKEN = re.compile(r"\b(?:\d+(?:\.\d+)*|[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*)\b")
COMMON = frozenset("the a an and or of to in is it for on as by with be this that are from not if return def "
                    "class self none true false import what does do say where explain python section".split())


def key_terms(text: str) -> set[str]:
    """The identifiers, names and numbers a text names (lowercased; dotted names also by part),
    without common words: what a supporting passage must also name."""
    out = set()
    for token in TOKEN.findall(text):
        for part in {token, *token.split(".")}:
            if (len(part) >= 3 or part[:1].isdigit()) and part.lower() not in COMMON:
                out.add(part.lower())
    return out


def support_features(question: str, passage: str) -> list[float]:
    """[share of the question's key terms the passage names, share of its numbers it names (1 when
    it has none)]: the reranker's lexical support signal beside the network's own score."""
    asked = key_terms(question)
    named = key_terms(passage)
    numbers = {t for t in asked if t[:1].isdigit()}
    return [len(asked & named) / len(asked) if asked else 0.0,
            len(numbers & named) / len(numbers) if numbers else 1.0]


@dataclass
class Corruptor:
    """Makes a passage's corrupted twin: one entity, number or identifier that the question also
    names is swapped for another of its kind (every occurrence), so the twin reads as fluently as
    the original but no longer supports an answer to the question. Identifiers are drawn from
    `vocabulary` (words of other passages)."""

    vocabulary: Sequence[str]
    seed: int = 0
    _rng: random.Random = field(init=False)
    _words: dict[tuple[bool, bool] | None, _Words] = field(init=False)

    def __post_init__(self) -> None:
        self._rng = random.Random(self.seed)
        self.vocabulary = sorted({w for w in self.vocabulary if len(w) >= 3 and w.lower() not in COMMON})
        self._words = {None: _Words(self.vocabulary)}
        for shape in {_shape(w) for w in self.vocabulary}:
            self._words[shape] = _Words([w for w in self.vocabulary if _shape(w) == shape])

    @classmethod
    def for_passages(cls, passages: Iterable[str], seed: int = 0) -> Corruptor:
        return cls([m.group(0) for p in passages for m in TOKEN.finditer(p) if not m.group(0)[0].isdigit()], seed)

    def twin(self, question: str, passage: str) -> str | None:
        """The corrupted twin, or None when the passage names nothing the question names (then no
        swap could make it unsupported for this question)."""
        asked = key_terms(question)
        pool = [t for t in dict.fromkeys(m.group(0) for m in TOKEN.finditer(passage)) if t.lower() in asked]
        if not pool:
            return None
        # The earliest named token: a reranker reads a passage's opening, so the swap must be there.
        target = min(pool[:3], key=lambda t: passage.find(t)) if self._rng.random() < 0.8 else self._rng.choice(pool)
        replacement = self._replacement(target)
        if replacement is None:
            return None
        return re.sub(rf"(?<![\w.]){re.escape(target)}(?![\w])", replacement, passage)

    def _replacement(self, token: str) -> str | None:
        if token[0].isdigit():
            parts = token.split(".")
            parts[-1] = str(int(parts[-1]) + self._rng.randint(1, 9))
            return ".".join(parts)
        # Another word of the token's shape, else any other word (never the token in another case).
        for words in (self._words.get(_shape(token)), self._words[None]):
            if words is not None and (word := words.pick(self._rng, token)) is not None:
                return word
        return None


def _shape(word: str) -> tuple[bool, bool]:
    """(capitalised, has an underscore): a replacement of the same shape reads like the original."""
    return word[0].isupper(), "_" in word


class _Words:
    """A sorted word list that draws a word other than a given one (case-insensitively) in time
    independent of the list's length: the reranker corrupts a twin per training pair, and with
    the wider built-in pairs the vocabulary is ~10 times longer. The draw is exactly
    rng.choice(the list without the word), so the twins are what a plain filtered choice gives."""

    def __init__(self, words: Sequence[str]) -> None:
        self.words = list(words)
        self.at: dict[str, list[int]] = {}
        for i, w in enumerate(self.words):
            self.at.setdefault(w.lower(), []).append(i)

    def pick(self, rng: random.Random, word: str) -> str | None:
        skipped = self.at.get(word.lower(), [])
        left = len(self.words) - len(skipped)
        if left <= 0:
            return None
        i = rng.choice(range(left))  # the same draw as rng.choice on a list of `left` words
        for position in skipped:  # sorted: step over each excluded position at or before i
            if position <= i:
                i += 1
        return self.words[i]
