"""`quark generate`: JSON fields, streaming to the terminal, stdin prompts, stops, bad names."""

import sys
from pathlib import Path

import pytest

from conftest import Quark
from quark.inference import Engine
from quark.tokenizer import Tokenizer


@pytest.fixture(scope="module")
def quark(tiny_model_home: Path) -> Quark:
    return Quark(tiny_model_home)


@pytest.fixture(scope="module")
def tok(tiny_model_home: Path) -> Tokenizer:
    return Tokenizer.load(tiny_model_home / "models" / "tiny")


def test_json_result_has_ids_text_finish_reason_and_timings(quark: Quark, tok: Tokenizer) -> None:
    args = ("generate", "--model", "tiny", "--prompt", "def f(x):", "--max-tokens", "12", "--temperature", "0.9",
            "--top-k", "40", "--seed", "5")
    out = quark.json(*args)
    assert out["prompt_token_ids"] == [tok.bos_id, *tok.encode("def f(x):")]
    assert 1 <= len(out["completion_token_ids"]) <= 12
    assert out["finish_reason"] in {"stop", "length"}
    assert out["finish_reason"] == "stop" or len(out["completion_token_ids"]) == 12
    assert out["text"] == tok.decode(out["completion_token_ids"])
    timings = out["timings"]
    assert 0 < timings["time_to_first_token_s"] <= timings["total_s"] and timings["tokens_per_s"] > 0
    assert out["params"]["top_k"] == 40 and out["params"]["seed"] == 5
    assert quark.json(*args)["text"] == out["text"]  # same seed, same text


def test_text_is_written_to_the_terminal_as_tokens_arrive(quark: Quark, monkeypatch: pytest.MonkeyPatch) -> None:
    original = Engine.stream
    shown_before_event: list[str] = []

    def spy(self, *args, **kwargs):
        for event in original(self, *args, **kwargs):
            sys.stdout.flush()
            shown_before_event.append(sys.stdout.buffer.getvalue().decode("utf-8", "replace"))
            yield event

    monkeypatch.setattr(Engine, "stream", spy)
    result = quark("generate", "--model", "tiny", "--prompt", "class A:", "--max-tokens", "10", "--temperature", "1",
                   "--seed", "2")
    events = len(shown_before_event)
    assert events >= 2
    # Each new token finds the text of the previous ones already on the terminal, growing as it goes.
    assert shown_before_event[0] == "" and len(shown_before_event[-1]) > 0
    assert all(a == b[:len(a)] for a, b in zip(shown_before_event, shown_before_event[1:]))
    assert result.stdout.startswith(shown_before_event[-1])


def test_prompt_from_stdin_and_stop_strings(quark: Quark) -> None:
    literal = quark.json("generate", "-m", "tiny", "-p", "import os\n", "--max-tokens", "2", "--temperature", "0")
    piped = quark.json("generate", "-m", "tiny", "-p", "-", "--max-tokens", "2", "--temperature", "0",
                       input="import os\n")
    assert piped["prompt_token_ids"] == literal["prompt_token_ids"]

    base = ("generate", "-m", "tiny", "-p", "x = ", "--max-tokens", "30", "--temperature", "1", "--seed", "3")
    whole = quark.json(*base)["text"]
    stop = whole[5:8]
    cut = quark.json(*base, "--stop", stop)
    assert cut["finish_reason"] == "stop" and stop not in cut["text"] and whole.startswith(cut["text"])


def test_unknown_model_and_bad_values_are_one_line_errors(quark: Quark) -> None:
    missing = quark("generate", "--model", "nope", "--prompt", "x", expect=1)
    assert "unknown model 'nope'" in missing.output and len(missing.output.strip().splitlines()) == 1
    bad = quark("generate", "--model", "tiny", "--prompt", "x", "--device", "tpu", expect=1)
    assert "--device" in bad.output
