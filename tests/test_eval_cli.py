"""`quark eval …` end to end on a tiny model folder: results stored with model and run, report drawn."""

from __future__ import annotations

import inspect
import json
import math
import shlex
import shutil
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch

from quark.atomic import atomic_dir
from quark.evaluation.perplexity import perplexity
from quark.modelfolder import load_model, save_model
from quark.models.llm import LLM, LLMConfig
from quark.tokenizer import Tokenizer, train_tokenizer
from quark.tokenizer.token_shards import TokenWriter

needs_bwrap = pytest.mark.skipif(shutil.which("bwrap") is None, reason="bubblewrap is not installed")


@pytest.fixture(scope="module")
def tokenizer_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("tok")
    train_tokenizer([inspect.getsource(m) for m in (shlex, textwrap, json)], folder / "tok", 512)
    return folder / "tok.model"


@pytest.fixture
def tiny(home: Path, tokenizer_file: Path) -> dict:
    """A model folder `tiny` (trained by run `r1`) and a token set `ts` with a val split."""
    tok = Tokenizer.load(tokenizer_file)
    torch.manual_seed(0)
    model = LLM(LLMConfig(vocab_size=tok.vocab_size, n_layer=2, n_head=2, n_kv_head=1, n_embd=32, max_seq_len=256))
    with atomic_dir(home / "models" / "tiny") as tmp:
        save_model(tmp, model, tokenizer_file, extra_config={"source_run": "r1"})
    ids = tok.encode(inspect.getsource(shlex))[:600]
    with atomic_dir(home / "tokens" / "ts") as tmp:
        writer = TokenWriter(tmp, tok.vocab_size)
        writer.add("val", ids)
        writer.close()
    return {"ids": ids}


def _jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


DOCQA = [{"id": "q1", "question": "Where is the Eiffel Tower?", "answer": "Paris", "gold_passages": ["p1"],
          "passages": [{"id": "p1", "text": "The Eiffel Tower is in Paris."}, {"id": "p2", "text": "Rome is old."}]}]
MBPP = [{"task_id": 7, "text": "Write a function to square a number.", "code": "def square(x):\n    return x * x",
         "test_list": ["assert square(3) == 9"]}]


def test_perplexity_command_stores_its_result_under_the_models_run(quark, home: Path, tiny: dict) -> None:
    out = quark.json("eval", "perplexity", "--model", "tiny", "--data", "ts", "--window", "64", "--stride", "32")
    metrics = out["metrics"]
    expected = perplexity(load_model(home / "models" / "tiny"), np.array(tiny["ids"]), window=64, stride=32)
    assert metrics["perplexity"] == pytest.approx(expected["perplexity"]) == pytest.approx(math.exp(metrics["loss"]))
    assert metrics["tokens"] == len(tiny["ids"]) - 1 and metrics["split"] == "val"
    assert (out["model"], out["run"], out["task"]) == ("tiny", "r1", "perplexity")
    stored = quark.json("eval", "report", "--model", "tiny")["results"]
    assert [(r["model"], r["run"], r["task"], r["metrics"]["perplexity"]) for r in stored] == \
        [("tiny", "r1", "perplexity", metrics["perplexity"])]


@needs_bwrap
def test_humaneval_generates_runs_and_stores(quark, home: Path, tiny: dict, tmp_path: Path) -> None:
    out = quark.json("eval", "humaneval", "--model", "tiny", "--limit", "2", "--samples", "2", "--temperature", "0.8",
                     "--max-new-tokens", "8", "--output", tmp_path / "samples.jsonl")
    metrics = out["metrics"]
    assert metrics["problems"] == 2 and metrics["samples_per_problem"] == 2 and metrics["sandbox"] == "bubblewrap"
    assert 0.0 <= metrics["pass@1"] <= metrics["pass@2"] <= 1.0
    rows = [json.loads(line) for line in (tmp_path / "samples.jsonl").read_text().splitlines()]
    assert [(r["task_id"], r["sample"]) for r in rows] == [("HumanEval/0", 0), ("HumanEval/0", 1),
                                                          ("HumanEval/1", 0), ("HumanEval/1", 1)]
    assert out["run"] == "r1"


@needs_bwrap
def test_reference_answers_score_perfectly(quark, tmp_path: Path) -> None:
    assert quark.json("eval", "humaneval", "--reference", "--limit", "5")["metrics"]["pass@1"] == 1.0
    mbpp = quark.json("eval", "mbpp", "--reference", "--data", _jsonl(tmp_path / "mbpp.jsonl", MBPP))
    assert mbpp["metrics"]["pass@1"] == 1.0 and mbpp["model"] == "(reference)"
    docqa = quark.json("eval", "docqa", "--reference", "--data", _jsonl(tmp_path / "qa.jsonl", DOCQA))["metrics"]
    assert docqa["exact_match"] == docqa["f1"] == docqa["citation_coverage"] == 1.0
    tasks = {r["task"] for r in quark.json("eval", "report")["results"]}
    assert tasks == {"humaneval", "mbpp", "docqa"}


def test_docqa_with_a_model(quark, tiny: dict, tmp_path: Path) -> None:
    out = quark.json("eval", "docqa", "--model", "tiny", "--data", _jsonl(tmp_path / "qa.jsonl", DOCQA),
                     "--max-new-tokens", "6", "--output", tmp_path / "answers.jsonl")
    assert out["metrics"]["examples"] == 1 and 0.0 <= out["metrics"]["f1"] <= 1.0
    assert json.loads((tmp_path / "answers.jsonl").read_text())["id"] == "q1"


def test_report_draws_the_table_and_the_curves(quark, home: Path, tiny: dict, tmp_path: Path) -> None:
    run_dir = home / "runs" / "r1"
    run_dir.mkdir(parents=True)
    lines = [json.dumps({"step": s,
                         "loss": 6.0 / (1 + s / 10)} | ({"val_loss": 6.5 / (1 + s / 10)} if s % 20 == 0 else {}))
             for s in range(0, 101, 5)]
    (run_dir / "metrics.jsonl").write_text("\n".join(lines) + '\n{"step": 105, "lo')  # a line being written
    quark("eval", "perplexity", "--model", "tiny", "--data", "ts")
    png = tmp_path / "curves.png"
    result = quark("eval", "report", "--model", "tiny", "-o", png)
    assert "perplexity" in result.stdout and "tiny" in result.stdout and "r1" in result.stdout
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000
    out = quark.json("eval", "report", "-o", png)
    assert out["runs"] == ["r1"] and out["png"] == str(png)
    (run_dir / "metrics.jsonl").write_text('{"step": 1, "loss": 2.0}\nnot json\n')
    failed = quark("eval", "report", "-o", png, expect=1)
    assert "metrics.jsonl:2" in failed.output


def test_bad_input_is_one_line_and_exit_1(quark, tiny: dict, tmp_path: Path) -> None:
    assert "unknown model 'nope'" in quark("eval", "perplexity", "--model", "nope", "--data", "ts", expect=1).output
    assert "unknown token set 'nope'" in quark("eval", "perplexity", "--model", "tiny", "--data", "nope",
                                               expect=1).output
    bad = tmp_path / "qa.jsonl"
    bad.write_text(json.dumps(DOCQA[0]) + "\n{oops\n")
    assert "qa.jsonl:2: not valid JSON" in quark("eval", "docqa", "--model", "tiny", "--data", bad, expect=1).output
    assert "--model is required" in quark("eval", "humaneval", expect=1).output
    assert "no evaluation results" in quark("eval", "report", expect=1).output


def test_docqa_builtin_set_scores_and_the_card_lists_the_result(quark, tiny_model_home) -> None:
    import shutil

    shutil.copytree(tiny_model_home / "models", quark.home / "models")
    reference = quark.json("eval", "docqa", "--reference", "--builtin", "stdlib", "--limit", "4")
    assert reference["metrics"]["exact_match"] == 1.0 and reference["metrics"]["citation_coverage"] == 1.0
    out = quark.json("eval", "docqa", "--model", "tiny", "--builtin", "stdlib", "--limit", "2", "--max-new-tokens", "8")
    assert out["metrics"]["examples"] == 2
    card = (quark.home / "models" / "tiny" / "card.md").read_text()
    assert "## Evaluation" in card and "| docqa | exact_match |" in card
    quark("eval", "docqa", "--model", "tiny", "--limit", "2", expect=1)  # neither --data nor --builtin
