"""Document QA and text metrics on hand-made examples; perplexity against an independent computation."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from quark.errors import QuarkError
from quark.evaluation import docqa, textmetrics
from quark.evaluation.perplexity import perplexity
from quark.models.llm import LLM, LLMConfig


def test_squad_normalisation_exact_match_and_f1() -> None:
    assert textmetrics.normalize_answer("  The Eiffel-Tower!  ") == "eiffeltower"
    assert textmetrics.exact_match("the Eiffel Tower.", ["Eiffel tower"]) == 1.0
    assert textmetrics.exact_match("Paris", ["Lyon", "paris"]) == 1.0
    # pred tokens: it is in paris france; gold: paris -> P = 1/5, R = 1, F1 = 1/3
    assert textmetrics.token_f1("It is in Paris, France", ["Paris"]) == pytest.approx(1 / 3)
    assert textmetrics.token_f1("nothing", ["Paris"]) == 0.0


def test_bleu_and_rouge_l_by_hand() -> None:
    # unigram precision 5/6, bigram 3/5, same length: BLEU-2 = sqrt(5/6 * 3/5) = sqrt(1/2)
    pred, ref = "the cat sat on the mat", "the cat is on the mat"
    assert textmetrics.corpus_bleu([pred], [[ref]], max_n=2) == pytest.approx(math.sqrt(0.5))
    # short prediction: precisions 1, brevity penalty exp(1 - 6/2)
    assert textmetrics.corpus_bleu(["the cat"], [[pred]], max_n=2) == pytest.approx(math.exp(-2))
    assert textmetrics.corpus_bleu([pred], [[ref]]) == 0.0  # no 4-gram in common, no smoothing
    assert textmetrics.corpus_bleu([pred], [[ref, pred]]) == pytest.approx(1.0)
    # LCS "the cat on the mat" = 5 of 6 tokens each way
    assert textmetrics.rouge_l(pred, [ref]) == pytest.approx(5 / 6)
    assert textmetrics.rouge_l("completely different words", [ref]) == 0.0


def _docqa_file(tmp_path: Path) -> Path:
    passages = [{"id": "p1", "text": "The Eiffel Tower is in Paris."}, {"id": "p2", "text": "Lyon is in France."}]
    rows = [
        {"id": "a", "question": "Where is the Eiffel Tower?", "passages": passages, "answer": ["Paris", "in Paris"],
         "gold_passages": ["p1"]},
        {"id": "b", "question": "Which city is in France?", "passages": passages, "answer": "Lyon",
         "gold_passages": ["p2"]},
        {"id": "c", "question": "What is tall?", "passages": passages, "answer": "The Eiffel Tower"},
    ]
    path = tmp_path / "qa.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_docqa_metrics_on_a_hand_made_example(tmp_path: Path) -> None:
    examples = docqa.load_examples(_docqa_file(tmp_path))
    assert examples[2].gold == {"p1", "p2"}  # no gold_passages: every passage counts
    predictions = [
        "Paris [p1]",                  # right, cites the gold passage
        "It is Lyon, I think [p1]",    # F1 1/3 (P 1/5, R 1), cites a non-gold passage
        "the Eiffel Tower [p9]",       # right; [p9] names no passage: removed, but cites nothing
    ]
    metrics = docqa.score(examples, predictions)
    assert metrics["examples"] == 3
    assert metrics["exact_match"] == pytest.approx(2 / 3)
    assert metrics["f1"] == pytest.approx((1 + 1 / 3 + 1) / 3)
    assert metrics["citation_coverage"] == pytest.approx(1 / 3)
    assert metrics["citation_precision"] == pytest.approx(1 / 2)
    perfect = docqa.score(examples, [docqa.reference_prediction(e) for e in examples])
    assert (perfect["exact_match"] == perfect["f1"] == perfect["citation_coverage"] == perfect["citation_precision"]
            == 1.0)
    assert docqa.citations("see [p1, p2] and [p2] [x]", frozenset({"p1", "p2"})) == ["p1", "p2", "p2"]
    assert "[p1]" in docqa.prompt(examples[0]) and "Where is the Eiffel Tower?" in docqa.prompt(examples[0])


def test_docqa_bad_lines_are_named(tmp_path: Path) -> None:
    path = tmp_path / "qa.jsonl"
    path.write_text(json.dumps({"question": "q", "passages": [{"id": "p1", "text": "t"}], "answer": "a",
                                "gold_passages": ["p7"]}) + "\n")
    with pytest.raises(QuarkError, match=r"qa.jsonl:1: gold_passages \['p7'\]"):
        docqa.load_examples(path)
    path.write_text(json.dumps({"question": "q", "passages": "p1", "answer": "a"}) + "\n")
    with pytest.raises(QuarkError, match="qa.jsonl:1: field 'passages' must be list"):
        docqa.load_examples(path)


@pytest.fixture(scope="module")
def model() -> LLM:
    torch.manual_seed(0)
    return LLM(LLMConfig(vocab_size=97, n_layer=2, n_head=2, n_kv_head=1, n_embd=32, max_seq_len=32)).eval()


def test_perplexity_is_exp_of_the_mean_loss_over_non_overlapping_windows(model: LLM) -> None:
    window = 16
    ids = np.random.default_rng(0).integers(0, 97, 5 * window + 1)
    result = perplexity(model, ids, window=window, batch_size=2)
    # Independently: the model's own mean loss on each window of 16 inputs and their next tokens.
    with torch.no_grad():
        losses = [model(torch.tensor(ids[s:s + window])[None], torch.tensor(ids[s + 1:s + window + 1])[None]).item()
                  for s in range(0, 5 * window, window)]
    assert result["tokens"] == 5 * window and result["stride"] == window
    assert result["loss"] == pytest.approx(float(np.mean(losses)), rel=1e-5)
    assert result["perplexity"] == pytest.approx(math.exp(np.mean(losses)), rel=1e-5)


def test_strided_perplexity_scores_each_token_once_with_its_window_of_context(model: LLM) -> None:
    window, ids = 8, np.random.default_rng(1).integers(0, 97, 30)
    result = perplexity(model, ids, window=window, stride=1)
    nll = []
    with torch.no_grad():
        for i in range(1, len(ids)):  # token i predicted from (up to) the `window` tokens before it
            context = torch.tensor(ids[max(0, i - window):i])[None]
            nll.append(F.cross_entropy(model(context)[0, -1], torch.tensor(ids[i])).item())
    assert result["tokens"] == len(ids) - 1
    assert result["perplexity"] == pytest.approx(math.exp(np.mean(nll)), rel=1e-5)


def test_perplexity_refuses_bad_input(model: LLM) -> None:
    with pytest.raises(QuarkError, match="out of range"):
        perplexity(model, [1, 2, 500])
    with pytest.raises(QuarkError, match="window must be between"):
        perplexity(model, [1, 2, 3], window=64)
    with pytest.raises(QuarkError, match="at least 2 tokens"):
        perplexity(model, [1])
