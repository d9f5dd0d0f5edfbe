"""Text-overlap metrics: SQuAD exact match and token F1, corpus BLEU, ROUGE-L.

Small and exact rather than a dependency: SQuAD's normalisation (lower case, no punctuation, no
articles, single spaces), BLEU as Papineni et al. define it (clipped 1-4-gram precisions,
geometric mean, brevity penalty against the closest reference length, no smoothing), ROUGE-L as
the LCS F1 of rouge-score (lower-cased alphanumeric tokens). Scores are in [0, 1].
"""

from __future__ import annotations

import math
import re
import string
from collections import Counter
from collections.abc import Sequence

_ARTICLES = re.compile(r"\b(a|an|the)\b")
_PUNCT = str.maketrans("", "", string.punctuation)
_BLEU_TOKEN = re.compile(r"\w+|[^\w\s]")
_ROUGE_TOKEN = re.compile(r"[a-z0-9]+")


def normalize_answer(text: str) -> str:
    """SQuAD's answer normalisation."""
    return " ".join(_ARTICLES.sub(" ", text.lower().translate(_PUNCT)).split())


def exact_match(prediction: str, answers: Sequence[str]) -> float:
    return float(any(normalize_answer(prediction) == normalize_answer(a) for a in answers))


def token_f1(prediction: str, answers: Sequence[str]) -> float:
    """Best bag-of-tokens F1 of the prediction against any of the answers."""
    return max((_f1(normalize_answer(prediction).split(), normalize_answer(a).split()) for a in answers), default=0.0)


def _f1(pred: list[str], gold: list[str]) -> float:
    if not pred or not gold:
        return float(pred == gold)
    common = sum((Counter(pred) & Counter(gold)).values())
    if common == 0:
        return 0.0
    precision, recall = common / len(pred), common / len(gold)
    return 2 * precision * recall / (precision + recall)


def _ngrams(tokens: list[str], n: int) -> Counter:
    return Counter(tuple(tokens[i:i + n]) for i in range(len(tokens) - n + 1))


def corpus_bleu(predictions: Sequence[str], references: Sequence[Sequence[str]], max_n: int = 4) -> float:
    """Corpus BLEU of predictions[i] against its references[i] (one or more strings each)."""
    if len(predictions) != len(references):
        raise ValueError(f"{len(predictions)} predictions but {len(references)} reference sets")
    matches, totals = [0] * max_n, [0] * max_n
    pred_len = ref_len = 0
    for prediction, refs in zip(predictions, references):
        pred = _BLEU_TOKEN.findall(prediction)
        ref_tokens = [_BLEU_TOKEN.findall(r) for r in refs]
        pred_len += len(pred)
        ref_len += min((len(r) for r in ref_tokens), key=lambda n: (abs(n - len(pred)), n), default=0)
        for n in range(1, max_n + 1):
            counts = _ngrams(pred, n)
            best: Counter = Counter()
            for ref in ref_tokens:
                best |= _ngrams(ref, n)
            matches[n - 1] += sum((counts & best).values())
            totals[n - 1] += sum(counts.values())
    if pred_len == 0 or min(matches) == 0:
        return 0.0
    log_precision = sum(math.log(m / t) for m, t in zip(matches, totals)) / max_n
    brevity = 1.0 if pred_len > ref_len else math.exp(1 - ref_len / pred_len)
    return brevity * math.exp(log_precision)


def rouge_l(prediction: str, references: Sequence[str]) -> float:
    """Best ROUGE-L F1 (longest common subsequence) of the prediction against the references."""
    pred = _ROUGE_TOKEN.findall(prediction.lower())
    best = 0.0
    for reference in references:
        ref = _ROUGE_TOKEN.findall(reference.lower())
        lcs = _lcs(pred, ref)
        if lcs:
            precision, recall = lcs / len(pred), lcs / len(ref)
            best = max(best, 2 * precision * recall / (precision + recall))
    return best


def _lcs(a: list[str], b: list[str]) -> int:
    previous = [0] * (len(b) + 1)
    for x in a:
        current = [0]
        for j, y in enumerate(b):
            current.append(previous[j] + 1 if x == y else max(previous[j + 1], current[j]))
        previous = current
    return previous[-1]
