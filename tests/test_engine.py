"""The inference engine: cache correctness, batching, seeds, streaming, stops, context budget."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from quark.errors import QuarkError
from quark.inference import Engine, SamplingParams


@pytest.fixture(scope="module")
def engine(tiny_model_home: Path) -> Engine:
    return Engine.load(tiny_model_home / "models" / "tiny")


def _prompts(engine: Engine) -> list[list[int]]:
    tok = engine.tokenizer
    return [tok.encode("def foo(x):"), tok.encode("import os\nimport sys\n\nclass Loader:\n    pass")]


def test_greedy_with_kv_cache_equals_full_forward_without_cache(engine: Engine) -> None:
    for prompt, completion in zip(_prompts(engine), engine.generate(_prompts(engine), SamplingParams(max_tokens=24, temperature=0))):
        ids = list(prompt)
        with torch.no_grad():
            for _ in completion.token_ids:
                ids.append(int(engine.model(torch.tensor([ids]))[0, -1].argmax()))
        assert ids[len(prompt):] == completion.token_ids


def test_batched_generation_matches_one_at_a_time(engine: Engine) -> None:
    params = SamplingParams(max_tokens=16, temperature=0)
    together = [c.token_ids for c in engine.generate(_prompts(engine), params)]
    alone = [engine.generate([p], params)[0].token_ids for p in _prompts(engine)]
    assert together == alone


def test_same_seed_same_text_whatever_the_batch(engine: Engine) -> None:
    params = SamplingParams(max_tokens=24, temperature=1.0, top_k=50, top_p=0.9, seed=11)
    forward = engine.generate(_prompts(engine), params)
    backward = engine.generate(_prompts(engine)[::-1], params)
    assert forward[0].text == backward[1].text and forward[1].text == backward[0].text
    other = engine.generate(_prompts(engine), SamplingParams(max_tokens=24, temperature=1.0, seed=12))
    assert [c.text for c in other] != [c.text for c in forward]


def test_stream_concatenates_to_the_completion_and_stops_on_stop_strings(engine: Engine) -> None:
    params = SamplingParams(max_tokens=30, temperature=1.0, seed=3)
    prompt = _prompts(engine)[0]
    whole = engine.generate([prompt], params)[0]
    events = list(engine.stream([prompt], params))
    assert "".join(e.text for e in events) == whole.text
    assert events[-1].finish_reason == whole.finish_reason
    stop = whole.text[4:7]
    stopped = engine.generate([prompt], SamplingParams(max_tokens=30, temperature=1.0, seed=3, stop=(stop,)))[0]
    assert stopped.finish_reason == "stop" and stop not in stopped.text and whole.text.startswith(stopped.text)


def test_prompt_longer_than_context_is_refused_not_cut(engine: Engine) -> None:
    with pytest.raises(QuarkError, match="context"):
        engine.generate([[5] * engine.context_length], SamplingParams(max_tokens=4))
    near = engine.generate([[5] * (engine.context_length - 3)], SamplingParams(max_tokens=50, temperature=0))[0]
    assert len(near.token_ids) <= 3 and near.max_tokens_clamped


def test_tool_calls_render_in_the_template(engine: Engine) -> None:
    tok = engine.tokenizer
    turn = tok.encode_turn({"role": "assistant", "content": "ignored", "tool_calls": [
        {"id": "call_0", "type": "function", "function": {"name": "add", "arguments": '{"a": 1, "b": 2}'}}]})
    assert turn[:2] == [tok.special_id("<|assistant|>"), tok.special_id("<|tool_call|>")] and turn[-1] == tok.end_id
    assert tok.decode(turn[2:-1]) == '{"name": "add", "arguments": {"a": 1, "b": 2}}'
