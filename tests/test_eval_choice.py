"""`quark eval choice`: log-likelihood multiple choice. A model trained on the answers scores well
above chance and an untrained one near it, so the test fails if scoring is broken either way."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from quark.evaluation.choice import builtin_questions, prompt
from quark.modelfolder import load_model, load_tokenizer, save_model


def _write(path: Path, questions) -> Path:
    path.write_text("".join(json.dumps({"question": q.question, "choices": list(q.choices),
                                        "answer": "ABCD"[q.answer] if i % 2 else q.answer, "subject": q.subject}) + "\n"
                            for i, q in enumerate(questions)))
    return path


def _train_on_answers(folder: Path, target: Path, questions, steps: int = 40) -> None:
    """Next-token training on the answer of each `prompt + answer` (SFT-style loss on the answer)."""
    torch.manual_seed(0)
    model, tokenizer = load_model(folder), load_tokenizer(folder)
    model.train()
    contexts = [[tokenizer.bos_id, *tokenizer.encode(prompt(q))] for q in questions]
    rows = [context + tokenizer.encode(" " + q.choices[q.answer]) for context, q in zip(contexts, questions)]
    width = max(map(len, rows))
    ids = torch.zeros(len(rows), width, dtype=torch.long)
    targets = torch.full((len(rows), width), -100, dtype=torch.long)
    for index, (context, row) in enumerate(zip(contexts, rows)):
        ids[index, : len(row)] = torch.tensor(row)
        targets[index, len(context) - 1: len(row) - 1] = torch.tensor(row[len(context):])
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
    for _ in range(steps):
        loss = F.cross_entropy(model(ids).transpose(1, 2), targets, ignore_index=-100)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    save_model(target, model, folder / "tokenizer.model")


@pytest.fixture
def tiny(home: Path, tiny_model_home: Path) -> Path:
    shutil.copytree(tiny_model_home / "models" / "tiny", home / "models" / "tiny")
    return home / "models" / "tiny"


def test_trained_model_beats_chance_and_untrained_does_not(quark, home: Path, tmp_path: Path, tiny: Path) -> None:
    folder = tiny
    questions = builtin_questions(16)
    data = _write(tmp_path / "choice.jsonl", questions)
    untrained = quark.json("eval", "choice", "--model", "tiny", "--data", str(data))["metrics"]
    assert untrained["questions"] == 16 and abs(untrained["chance"] - 0.25) < 1e-9
    assert untrained["acc"] <= 0.5 and untrained["acc_norm"] <= 0.5
    _train_on_answers(folder, home / "models" / "tiny-answers", questions)
    trained = quark.json("eval", "choice", "--model", "tiny-answers", "--data", str(data),
                         "-o", str(tmp_path / "rows.jsonl"))["metrics"]
    assert trained["acc"] >= 0.75 and trained["acc_norm"] >= 0.75
    assert set(trained["per_subject"]) == {q.subject for q in questions}
    assert sum(s["n"] for s in trained["per_subject"].values()) == 16
    assert len((tmp_path / "rows.jsonl").read_text().splitlines()) == 16
    builtin = quark.json("eval", "choice", "--model", "tiny-answers", "--builtin", "stdlib", "--limit", "8")
    assert builtin["task"] == "choice" and builtin["metrics"]["data"] == "builtin:stdlib"


def test_bad_choice_data_is_one_line(quark, tmp_path: Path, tiny: Path) -> None:
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"question": "q", "choices": ["a", "b"], "answer": "C"}\n')
    assert "bad.jsonl:1: field 'answer' must be a choice index 0-1 or a letter A-B" in \
        quark("eval", "choice", "--model", "tiny", "--data", str(bad), expect=1).output
    bad.write_text('{"question": "q", "choices": ["only one"], "answer": 0}\n')
    refused = quark("eval", "choice", "--model", "tiny", "--data", str(bad), expect=1)
    assert "field 'choices' must be 2 to" in refused.output
    assert "exactly one of" in quark("eval", "choice", "--model", "tiny", expect=1).output
