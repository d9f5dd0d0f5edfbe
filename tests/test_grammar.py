"""Grammar-constrained decoding in the engine: JSON schemas and tool calls on the tiny random model,
rows with and without a grammar in one batch, streaming, and rows joining a running LiveBatch."""

import json
from pathlib import Path

import jsonschema
import pytest

from quark.errors import QuarkError
from quark.inference import Engine, SamplingParams, json_schema_grammar, tool_call_grammar
from quark.inference.tool_calls import ToolCallReader, read_tool_calls, starts_tool_call

WEATHER = {"type": "object", "additionalProperties": False, "required": ["city", "days", "unit"],
           "properties": {"city": {"type": "string", "maxLength": 8},
                          "days": {"type": "integer", "minimum": 1, "maximum": 7},
                          "unit": {"enum": ["celsius", "fahrenheit"]}}}
CODE = {"type": "object", "additionalProperties": False, "required": ["code"],
        "properties": {"code": {"type": "string", "maxLength": 16}}}
TOOLS = [{"type": "function", "function": {"name": "get_weather", "description": "Weather for a city.",
                                           "parameters": WEATHER}},
         {"type": "function", "function": {"name": "run_python", "description": "Run Python code.",
                                           "parameters": CODE}}]


@pytest.fixture(scope="module")
def engine(tiny_model_home: Path) -> Engine:
    return Engine.load(tiny_model_home / "models" / "tiny")


@pytest.fixture(scope="module")
def prompt(engine: Engine) -> list[int]:
    return engine.chat_prompt([{"role": "user", "content": "What is the weather in Paris?"}])


def sample(seed: int, grammar=None, max_tokens: int = 96, temperature: float = 1.0) -> SamplingParams:
    return SamplingParams(max_tokens=max_tokens, temperature=temperature, seed=seed, grammar=grammar)


def control_ids(engine: Engine) -> set[int]:
    sp = engine.tokenizer.sp
    return {i for i in range(sp.get_piece_size()) if sp.is_control(i) or sp.is_unknown(i)}


def test_mixed_batch_grammar_rows_validate_and_free_rows_are_unchanged(engine: Engine, prompt: list[int]) -> None:
    grammar = json_schema_grammar(WEATHER)
    params = [sample(seed, grammar if seed % 2 == 0 else None) for seed in range(12)]
    out = engine.generate([prompt] * len(params), params)
    alone = engine.generate([prompt] * 6, [p for p in params if p.grammar is None])
    specials = control_ids(engine)
    for completion, p in zip(out, params):
        if p.grammar is not None:
            assert completion.finish_reason == "stop"  # the grammar completed the object and ended the row
            jsonschema.validate(json.loads(completion.text), WEATHER)
            assert not specials & set(completion.token_ids)  # no control symbol inside the JSON
    # Rows without a grammar generate exactly what they generate in a batch of their own.
    assert [c.text for c, p in zip(out, params) if p.grammar is None] == [c.text for c in alone]


def test_greedy_rows_are_constrained_too(engine: Engine, prompt: list[int]) -> None:
    out = engine.generate([prompt, prompt], [sample(0, json_schema_grammar(WEATHER), temperature=0.0),
                                             sample(0, temperature=0.0)])
    jsonschema.validate(json.loads(out[0].text), WEATHER)
    assert out[1].text == engine.generate([prompt], sample(0, temperature=0.0))[0].text


def test_byte_fallback_pieces_spell_non_ascii_enum_values_exactly(engine: Engine, prompt: list[int]) -> None:
    words = ["café", "naïve", "日本語", "▁x"]  # é, ï and CJK come from <0xNN> pieces; ▁ is a literal U+2581 here
    assert any(engine.tokenizer.sp.is_byte(i) for i in engine.tokenizer.encode("日本語"))
    schema = {"type": "array", "items": {"enum": words}, "minItems": 3, "maxItems": 3}
    for completion in engine.generate([prompt] * 8, [sample(s, json_schema_grammar(schema)) for s in range(8)]):
        values = json.loads(completion.text)
        assert len(values) == 3 and set(values) <= set(words), completion.text


def test_streamed_rows_under_a_grammar_parse(engine: Engine, prompt: list[int]) -> None:
    grammar = tool_call_grammar(TOOLS, parallel=False)
    params = [sample(seed, grammar if seed < 3 else None) for seed in range(5)]
    texts, ids, finish = [""] * 5, [[] for _ in range(5)], [None] * 5
    for event in engine.stream([prompt] * 5, params):
        texts[event.index] += event.text
        ids[event.index] += event.token_ids
        finish[event.index] = event.finish_reason or finish[event.index]
    for i in range(3):
        assert starts_tool_call(engine.tokenizer, ids[i]) and finish[i] == "stop"
        (call,) = read_tool_calls(texts[i])
        schema = next(t["function"]["parameters"] for t in TOOLS if t["function"]["name"] == call.name)
        jsonschema.validate(json.loads(call.arguments), schema)


def test_a_grammar_row_joins_a_running_live_batch(engine: Engine, prompt: list[int]) -> None:
    batch = engine.live_batch()
    plain = [sample(seed, max_tokens=40) for seed in (7, 8)]
    keys = batch.add([prompt, prompt], plain)
    texts: dict[int, str] = {}
    ends: dict[int, str] = {}

    def step() -> None:
        events, _ = batch.step()
        for event in events:
            texts[event.index] = texts.get(event.index, "") + event.text
            ends[event.index] = event.finish_reason or ends.get(event.index)

    for _ in range(5):
        step()
    (joined,) = batch.add([prompt[:-3] + prompt[-1:]], [sample(9, tool_call_grammar(TOOLS, name="get_weather",
                                                                                     parallel=False))])
    while batch:
        step()
    (call,) = read_tool_calls(texts[joined])
    assert call.name == "get_weather" and ends[joined] == "stop"
    jsonschema.validate(json.loads(call.arguments), WEATHER)
    alone = engine.generate([prompt, prompt], plain)
    assert [texts[k] for k in keys] == [c.text for c in alone]


def test_auto_may_answer_in_text_or_call(engine: Engine, prompt: list[int]) -> None:
    grammar = tool_call_grammar(TOOLS, required=False, parallel=False)
    out = engine.generate([prompt] * 8, [sample(seed, grammar, max_tokens=48) for seed in range(8)])
    specials = control_ids(engine)
    for completion in out:
        if starts_tool_call(engine.tokenizer, completion.token_ids):
            assert read_tool_calls(completion.text) is not None
        else:  # text: never a control symbol (a turn marker) in the middle of it
            assert not specials & set(completion.token_ids)


def test_auto_with_a_reply_schema_calls_or_answers_in_json(engine: Engine, prompt: list[int]) -> None:
    grammar = tool_call_grammar(TOOLS, required=False, parallel=False, reply_schema=WEATHER)
    out = engine.generate([prompt] * 8, [sample(seed, grammar) for seed in range(8)])
    for completion in out:
        assert completion.finish_reason == "stop"
        if starts_tool_call(engine.tokenizer, completion.token_ids):
            assert read_tool_calls(completion.text) is not None
        else:
            jsonschema.validate(json.loads(completion.text), WEATHER)


def test_parallel_and_serial_masks_agree(engine: Engine) -> None:
    import torch

    from quark.inference.grammar import constrain

    grammar = tool_call_grammar(TOOLS)
    text = engine.tokenizer.encode('{"name": "get_weather", "arguments": {"city": "Pa')
    serial = [engine.grammars.matcher(grammar) for _ in range(2)]
    parallel = [engine.grammars.matcher(grammar) for _ in range(2)]
    for matcher in (*serial, *parallel):
        for token in [engine.tokenizer.special_id("<|tool_call|>"), *text]:
            matcher.accept(token)
    logits = [torch.zeros(3, engine.model.config.vocab_size) for _ in range(2)]
    constrain(logits[0], [(0, serial[0]), (2, serial[1])], parallel=False)
    constrain(logits[1], [(0, parallel[0]), (2, parallel[1])], parallel=True)
    assert torch.equal(logits[0], logits[1]) and torch.isfinite(logits[0][1]).all()  # line 1 has no grammar
    allowed = torch.isfinite(logits[0][0])
    assert 1 < int(allowed.sum()) < allowed.numel() and not allowed[engine.tokenizer.end_id]  # inside a string


def test_tool_call_reader_streams_what_it_reads_whole() -> None:
    text = ('{"name": "get_weather", "arguments": {"city": "Pa\\"ris}", "days": 2, "unit": "celsius"}}\n'
            '{"name": "run_python", "arguments": {"code": "print([1])"}}')
    reader, deltas = ToolCallReader(), []
    for char in text:
        deltas += reader.feed(char)
    assert reader.complete
    whole = read_tool_calls(text)
    assert [(c.name, c.arguments) for c in reader.calls] == [(c.name, c.arguments) for c in whole]
    assert json.loads(whole[0].arguments)["city"] == 'Pa"ris}'
    assert [d["function"]["name"] for d in deltas if "id" in d] == ["get_weather", "run_python"]
    for index, call in enumerate(whole):
        assert "".join(d["function"]["arguments"] for d in deltas if d["index"] == index) == call.arguments
    assert read_tool_calls(text[:-2]) is None  # cut short (max_tokens): not a complete call


def test_bad_schemas_and_tools_are_clear_errors(engine: Engine) -> None:
    with pytest.raises(QuarkError, match=r"json schema: .*objekt"):
        engine.grammars.check(json_schema_grammar({"type": "objekt"}))
    with pytest.raises(QuarkError, match="no function named 'nope'"):
        tool_call_grammar(TOOLS, name="nope")
    with pytest.raises(QuarkError, match=r"tools\[0\]\.function\.name"):
        tool_call_grammar([{"type": "function", "function": {"parameters": {}}}])
    compiled = engine.grammars.matcher(json_schema_grammar(WEATHER))  # compiled once, copied per row
    assert engine.grammars.matcher(json_schema_grammar(WEATHER)) is not compiled
