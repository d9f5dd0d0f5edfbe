"""Document-grounded question answering: answer from given passages and cite them.

Data, one JSON object per line:

    {"id": "q1", "question": "...", "passages": [{"id": "p1", "text": "..."}, ...],
     "answer": "..." or ["...", ...], "gold_passages": ["p1"]}

`id` and `gold_passages` are optional; without `gold_passages` every given passage counts as
gold. A prediction cites a passage by writing its id in square brackets, `[p1]` (several ids may
share brackets: `[p1, p2]`). Brackets holding only id-like tokens (letters, digits, `_ . -`,
comma-separated) are citation markers: they are removed before the answer is compared, and count
as citations only of the given passages they name (`[p9]` for a missing p9 cites nothing).

Metrics, each a mean over examples unless said otherwise:
- exact_match, f1: SQuAD-normalised, against the best of the answers, on the prediction with its
  citations removed.
- citation_coverage: the fraction of examples whose prediction cites at least one gold passage.
- citation_precision: over all citations of all predictions, the fraction that name a gold
  passage (0 when nothing is cited).
- rouge_l (mean) and bleu (corpus) of the cleaned predictions, for long-form answers.

With a document index (`quark eval docqa --index NAME`, `with_retrieved`), each example's
passages are replaced by the index's top-k chunks for its question, numbered 1..k; a retrieved
chunk is gold when it contains an answer or the opening of a given gold passage, and
`retrieval_recall_at_k` is the fraction of questions with a gold chunk among the k.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from quark.errors import QuarkError
from quark.evaluation import textmetrics
from quark.jsonl import field, read_jsonl

_BRACKETS = re.compile(r"\[\s*([\w.-]+(?:\s*,\s*[\w.-]+)*)\s*\]")


@dataclass(frozen=True)
class Example:
    id: str
    question: str
    passages: tuple[tuple[str, str], ...]  # (id, text)
    answers: tuple[str, ...]
    gold: frozenset[str]

    @property
    def passage_ids(self) -> frozenset[str]:
        return frozenset(pid for pid, _ in self.passages)


def load_examples(path: Path, limit: int | None = None) -> list[Example]:
    examples = []
    for number, row in read_jsonl(path):
        question = field(path, number, row, "question", str)
        raw_passages = field(path, number, row, "passages", list)
        passages = []
        for passage in raw_passages:
            if not (isinstance(passage, dict) and isinstance(passage.get("id"), (str, int))
                    and isinstance(passage.get("text"), str)):
                raise QuarkError(f"{path}:{number}: each passage must be an object with an 'id' and a string 'text'")
            passages.append((str(passage["id"]), passage["text"]))
        answer = field(path, number, row, "answer", (str, list))
        answers = (answer,) if isinstance(answer, str) else tuple(answer)
        if not answers or not all(isinstance(a, str) for a in answers):
            raise QuarkError(f"{path}:{number}: field 'answer' must be a string or a non-empty list of strings")
        ids = {pid for pid, _ in passages}
        gold = frozenset(map(str, field(path, number, row, "gold_passages", list, default=sorted(ids))))
        if not gold <= ids:
            raise QuarkError(f"{path}:{number}: gold_passages {sorted(gold - ids)} are not among the passage ids")
        examples.append(Example(str(field(path, number, row, "id", (str, int), default=f"line-{number}")),
                                question, tuple(passages), answers, gold))
        if limit is not None and len(examples) >= limit:
            break
    if not examples:
        raise QuarkError(f"{path}: no examples")
    return examples


def prompt(example: Example) -> str:
    """The instruction the model answers (as a user turn when the model is a chat model)."""
    sources = "\n\n".join(f"[{pid}] {text}" for pid, text in example.passages)
    return ("Answer the question using only the passages below. Cite the passages you use by their id in "
            f"square brackets, like [{example.passages[0][0] if example.passages else 'p1'}].\n\n"
            f"{sources}\n\nQuestion: {example.question}\nAnswer:")


def reference_prediction(example: Example) -> str:
    """The gold answer citing the gold passages: what a perfect model would say."""
    return f"{example.answers[0]} " + " ".join(f"[{pid}]" for pid in sorted(example.gold))


def citations(prediction: str, passage_ids: frozenset[str]) -> list[str]:
    """Passage ids cited in `prediction`, in order, counting repeats."""
    cited = []
    for inside in _BRACKETS.findall(prediction):
        cited += [part.strip() for part in inside.split(",") if part.strip() in passage_ids]
    return cited


def strip_citations(prediction: str) -> str:
    return " ".join(_BRACKETS.sub(" ", prediction).split())


def score(examples: Sequence[Example], predictions: Sequence[str]) -> dict:
    if len(examples) != len(predictions):
        raise ValueError(f"{len(examples)} examples but {len(predictions)} predictions")
    if not examples:
        raise QuarkError("no examples to score")
    em = f1 = covered = rouge = 0.0
    cited_total = cited_gold = 0
    cleaned = []
    for example, prediction in zip(examples, predictions):
        text = strip_citations(prediction)
        cleaned.append(text)
        cited = citations(prediction, example.passage_ids)
        em += textmetrics.exact_match(text, example.answers)
        f1 += textmetrics.token_f1(text, example.answers)
        rouge += textmetrics.rouge_l(text, example.answers)
        covered += any(pid in example.gold for pid in cited)
        cited_total += len(cited)
        cited_gold += sum(pid in example.gold for pid in cited)
    n = len(examples)
    return {"examples": n, "exact_match": em / n, "f1": f1 / n, "citation_coverage": covered / n,
            "citation_precision": cited_gold / cited_total if cited_total else 0.0, "rouge_l": rouge / n,
            "bleu": textmetrics.corpus_bleu(cleaned, [e.answers for e in examples])}


def _norm(text: str) -> str:
    return " ".join(text.lower().split())


def supports(chunk: str, answers: Sequence[str], gold_texts: Sequence[str], opening: int = 80) -> bool:
    """Whether a retrieved chunk holds an answer, or the opening of a gold passage."""
    text = _norm(chunk)
    return any(_norm(a) and _norm(a) in text for a in answers) or any(
        _norm(g)[:opening] and _norm(g)[:opening] in text for g in gold_texts)


def with_retrieved(examples: Sequence[Example], search: Callable[[str, int], Sequence[str]],
                   k: int) -> tuple[list[Example], dict]:
    """The examples with their passages replaced by `search(question, k)`'s texts (ids 1..k), gold
    by `supports`; and the retrieval figures."""
    out, found = [], 0
    for e in examples:
        texts = list(search(e.question, k))[:k]
        gold_texts = [text for pid, text in e.passages if pid in e.gold]
        gold = frozenset(str(n) for n, t in enumerate(texts, 1) if supports(t, e.answers, gold_texts))
        found += bool(gold)
        out.append(Example(e.id, e.question, tuple((str(n), t) for n, t in enumerate(texts, 1)), e.answers, gold))
    return out, {"retrieval_k": k, "retrieval_recall_at_k": found / len(examples) if examples else 0.0}


def builtin_examples(count: int = 20, *, seed: int = 0, distractors: int = 2,
                     passage_chars: int = 500) -> list[Example]:
    """Questions over the documentation topics every Python install ships (pydoc_data.topics).

    Each example asks what a topic's section says; the gold passage is that topic's opening and
    the answer its first sentence; `distractors` other topics are shuffled in beside it, so a
    model must pick the right passage to cite. Deterministic for a seed.
    """
    import pydoc_data.topics
    import random

    topics = []
    for key in sorted(pydoc_data.topics.topics):
        text = pydoc_data.topics.topics[key].strip()
        title, _, body = text.partition("\n")
        body = body.lstrip("*=\n ")
        sentence = " ".join(re.split(r"(?<=[.:])\s", body, maxsplit=1)[0].split()).rstrip(":")
        if title and len(sentence) > 20:
            topics.append((key, title.strip(), sentence, text[:passage_chars]))
    rng = random.Random(seed)
    chosen = rng.sample(topics, min(count, len(topics)))
    examples = []
    for number, (key, title, sentence, passage) in enumerate(chosen):
        others = rng.sample([t for t in topics if t[0] != key], distractors)
        passages = [(f"p{i + 1}", text) for i, (_, _, _, text) in enumerate([(key, title, sentence, passage), *others])]
        rng.shuffle(passages)
        gold = next(pid for pid, text in passages if text == passage)
        examples.append(Example(f"stdlib-{number}", f"What does the section \"{title}\" say first?",
                                tuple(passages), (sentence,), frozenset({gold})))
    return examples
