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
    for prompt, completion in zip(_prompts(engine), engine.generate(_prompts(engine), SamplingParams(max_tokens=24,
                                                                                                     temperature=0))):
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


def test_rows_of_different_lengths_survive_cache_compaction(engine: Engine) -> None:
    prompts = _prompts(engine) + [engine.tokenizer.encode("x = 1\n")]
    params = [SamplingParams(max_tokens=n, temperature=0) for n in (2, 20, 5)]  # two finish early: compaction
    together = [c.token_ids for c in engine.generate(prompts, params)]
    alone = [engine.generate([p], q)[0].token_ids for p, q in zip(prompts, params)]
    assert together == alone and [len(t) for t in together] == [2, 20, 5]


def test_a_cancelled_row_stops_and_the_others_finish(engine: Engine) -> None:
    seen: dict[int, int] = {0: 0, 1: 0}
    events = []
    for event in engine.stream(_prompts(engine), SamplingParams(max_tokens=12, temperature=0),
                               cancelled=lambda i: i == 1 and seen[1] >= 3):
        seen[event.index] += 1
        events.append(event)
    assert seen[1] == 3 and all(e.finish_reason is None for e in events if e.index == 1)
    assert seen[0] == 12 and events[-1].finish_reason == "length"


def test_rows_joining_a_running_batch_generate_as_if_alone(engine: Engine) -> None:
    greedy = SamplingParams(max_tokens=12, temperature=0)
    sampled = SamplingParams(max_tokens=9, temperature=1.0, seed=5)
    prompts = _prompts(engine) + [engine.tokenizer.encode("x")]
    params = [greedy, greedy, sampled]
    alone = [engine.generate([p], q)[0].token_ids for p, q in zip(prompts, params)]
    batch = engine.live_batch()
    tokens: dict[int, list[int]] = {}
    joins = {3: 1, 6: 2}  # a longer prompt joins at step 3 (the cache is re-aligned), a shorter at step 6
    keys = batch.add([prompts[0]], params[0])
    for step in range(40):
        if step in joins:
            keys += batch.add([prompts[joins[step]]], params[joins[step]])
        events, _ = batch.step()
        for event in events:
            tokens.setdefault(event.index, []).extend(event.token_ids)
        if not batch and step > max(joins):
            break
    assert [tokens[k] for k in keys] == alone
