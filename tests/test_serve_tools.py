"""`quark serve` with OpenAI tools, tool_choice and response_format, driven by the official client:
every seeded sample parses and validates under the grammar; without it, almost none do."""

import json
from collections.abc import Iterator
from pathlib import Path

import jsonschema
import openai
import pytest

from quark.tokenizer import Tokenizer
from test_grammar import CODE, TOOLS, WEATHER
from test_serve import quark_serve

SCHEMAS = {"get_weather": WEATHER, "run_python": CODE}
ANSWER = {"type": "object", "additionalProperties": False, "required": ["answer", "score", "tags"],
          "properties": {"answer": {"type": "string", "maxLength": 10},
                         "score": {"type": "integer", "minimum": 0, "maximum": 10},
                         "tags": {"type": "array", "items": {"enum": ["a", "b", "c"]}, "maxItems": 3}}}
JSON_SCHEMA = {"type": "json_schema", "json_schema": {"name": "answer", "schema": ANSWER, "strict": True}}
MESSAGES = [{"role": "user", "content": "What is the weather in Paris for three days?"}]
N = 50
SAMPLE = dict(model="tiny", messages=MESSAGES, n=N, seed=100, temperature=1.0, max_tokens=80)
REQUIRED = dict(**SAMPLE, tools=TOOLS, tool_choice="required", parallel_tool_calls=False)


@pytest.fixture(scope="module")
def client(tiny_model_home: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[openai.OpenAI]:
    """A client of `quark serve` whose batch holds all 50 samples of a request at once."""
    with quark_serve(tiny_model_home, tmp_path_factory, "--max-batch", "64") as url:
        yield openai.OpenAI(base_url=url, api_key="unused", max_retries=0, timeout=120)


@pytest.fixture(scope="module")
def tok(tiny_model_home: Path) -> Tokenizer:
    return Tokenizer.load(tiny_model_home / "models" / "tiny")


@pytest.fixture(scope="module")
def required(client: openai.OpenAI):
    return client.chat.completions.create(**REQUIRED)


@pytest.fixture(scope="module")
def answers(client: openai.OpenAI):
    return client.chat.completions.create(**SAMPLE, response_format=JSON_SCHEMA)


@pytest.fixture(scope="module")
def free(client: openai.OpenAI) -> list[str]:
    """The same 50 samples with no grammar at all."""
    return [c.message.content for c in client.chat.completions.create(**SAMPLE).choices]


def valid_call(name: str, arguments: str) -> bool:
    try:
        jsonschema.validate(json.loads(arguments), SCHEMAS[name])
        return True
    except (KeyError, ValueError, jsonschema.ValidationError):
        return False


def valid_call_text(text: str | None) -> bool:
    """Free text that happens to be a valid call, written the way the template renders one."""
    try:
        call = json.loads(text or "")
        return valid_call(call["name"], json.dumps(call["arguments"]))
    except (ValueError, TypeError, KeyError):
        return False


def valid_answer(text: str | None) -> bool:
    try:
        jsonschema.validate(json.loads(text or ""), ANSWER)
        return True
    except (ValueError, jsonschema.ValidationError):
        return False


def streamed(client: openai.OpenAI, **kwargs) -> list[dict]:
    """Each choice of a streamed reply, assembled from its deltas: content, tool calls, finish reason."""
    choices = [{"content": "", "calls": {}, "finish": None} for _ in range(kwargs.get("n", 1))]
    for chunk in client.chat.completions.create(stream=True, **kwargs):
        for c in chunk.choices:
            choice = choices[c.index]
            choice["content"] += c.delta.content or ""
            for delta in c.delta.tool_calls or []:
                call = choice["calls"].setdefault(delta.index, {"id": None, "name": None, "arguments": ""})
                call["id"] = call["id"] or delta.id
                call["name"] = call["name"] or (delta.function and delta.function.name)
                call["arguments"] += (delta.function and delta.function.arguments) or ""
            choice["finish"] = c.finish_reason or choice["finish"]
    return choices


def test_required_tool_calls_validate_in_50_of_50(required, free: list[str]) -> None:
    good = 0
    for choice in required.choices:
        (call,) = choice.message.tool_calls
        assert call.type == "function" and call.id.startswith("call_") and choice.message.content is None
        good += choice.finish_reason == "tool_calls" and valid_call(call.function.name, call.function.arguments)
    assert good == N
    assert len({c.message.tool_calls[0].id for c in required.choices}) == N
    # The same model and seeds without the grammar: its text is noise, and (almost) never a valid call.
    assert sum(valid_call_text(text) for text in free) <= 2


def test_streamed_required_tool_calls_validate_in_50_of_50(client: openai.OpenAI, required) -> None:
    good = 0
    for choice, whole in zip(streamed(client, **REQUIRED), required.choices):
        (call,) = choice["calls"].values()
        good += choice["finish"] == "tool_calls" and valid_call(call["name"], call["arguments"])
        # Streamed deltas add up to what the same seed returns in one piece.
        (reference,) = whole.message.tool_calls
        assert (call["name"], call["arguments"]) == (reference.function.name, reference.function.arguments)
    assert good == N


def test_named_function_is_the_one_called(client: openai.OpenAI) -> None:
    reply = client.chat.completions.create(**{**SAMPLE, "n": 4}, tools=TOOLS, parallel_tool_calls=False,
                                           tool_choice={"type": "function", "function": {"name": "run_python"}})
    for choice in reply.choices:
        assert choice.finish_reason == "tool_calls"
        assert all(call.function.name == "run_python" and valid_call("run_python", call.function.arguments)
                   for call in choice.message.tool_calls)


def test_json_schema_answers_validate_in_50_of_50(answers, free: list[str]) -> None:
    assert sum(c.finish_reason == "stop" and valid_answer(c.message.content) for c in answers.choices) == N
    assert sum(valid_answer(text) for text in free) <= 2


def test_streamed_json_schema_answers_validate_in_50_of_50(client: openai.OpenAI, answers) -> None:
    choices = streamed(client, **SAMPLE, response_format=JSON_SCHEMA)
    assert sum(c["finish"] == "stop" and valid_answer(c["content"]) for c in choices) == N
    assert [c["content"] for c in choices] == [c.message.content for c in answers.choices]


def test_json_object_is_an_object(client: openai.OpenAI) -> None:
    reply = client.chat.completions.create(**{**SAMPLE, "n": 8}, response_format={"type": "json_object"})
    objects = [json.loads(c.message.content) for c in reply.choices if c.finish_reason == "stop"]
    assert objects and all(isinstance(o, dict) for o in objects)


def test_auto_streams_what_it_answers_whole(client: openai.OpenAI) -> None:
    kwargs = dict(**{**SAMPLE, "n": 8, "max_tokens": 32}, tools=TOOLS, tool_choice="auto")
    whole = client.chat.completions.create(**kwargs)
    for choice, reference in zip(streamed(client, **kwargs), whole.choices):
        assert choice["finish"] == reference.finish_reason
        if reference.message.tool_calls:
            assert [(c["name"], c["arguments"]) for c in choice["calls"].values()] == [
                (c.function.name, c.function.arguments) for c in reference.message.tool_calls]
        else:
            assert choice["content"] == reference.message.content and not choice["calls"]


def test_tool_turns_go_back_into_the_prompt(client: openai.OpenAI, tok: Tokenizer) -> None:
    call = {"id": "call_1", "type": "function",
            "function": {"name": "get_weather", "arguments": '{"city": "Paris", "days": 3, "unit": "celsius"}'}}
    messages = [*MESSAGES, {"role": "assistant", "content": None, "tool_calls": [call]},
                {"role": "tool", "tool_call_id": "call_1", "content": "sunny, 21 C"}]
    reply = client.chat.completions.create(model="tiny", messages=messages, max_tokens=4)
    rendered = [*MESSAGES, {"role": "assistant", "content": "", "tool_calls": [call]},
                {"role": "tool", "content": "sunny, 21 C"}]
    assert reply.usage.prompt_tokens == len(tok.encode_chat(rendered))
    ids = tok.encode_chat(rendered)
    assert tok.special_id("<|tool_call|>") in ids and tok.special_id("<|tool|>") in ids
    # Offered tools are described in the system prompt, in the wording of the synthetic tool traces.
    offered = client.chat.completions.create(model="tiny", messages=MESSAGES, max_tokens=1, tools=TOOLS)
    assert offered.usage.prompt_tokens > len(tok.encode_chat(MESSAGES)) + 20
    bad = [*MESSAGES, {"role": "assistant", "tool_calls": [{**call, "function": {"name": "f", "arguments": "{oops"}}]}]
    with pytest.raises(openai.BadRequestError, match="not valid JSON"):
        client.chat.completions.create(model="tiny", messages=bad, max_tokens=1)


@pytest.mark.parametrize("kwargs, param", [
    (dict(response_format={"type": "json_schema", "json_schema": {"name": "x", "schema": {"type": "objekt"}}}),
     "response_format.json_schema.schema"),
    (dict(tools=[{"type": "function", "function": {"name": "f", "parameters": {
        "type": "object", "properties": {"a": {"type": "string", "pattern": "(("}}}}}]),
     "tools[0].function.parameters"),
    (dict(tool_choice="required"), "tool_choice"),
    (dict(tools=TOOLS, tool_choice={"type": "function", "function": {"name": "nope"}}), "tool_choice"),
    (dict(tools=[{"type": "function", "function": {"name": "has space"}}]), "tools[0].function.name"),
    (dict(response_format={"type": "json_schema", "json_schema": {"name": "x"}}), "response_format.json_schema.schema"),
])
def test_bad_tools_and_schemas_are_400s_naming_the_parameter(client: openai.OpenAI, kwargs: dict, param: str) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(model="tiny", messages=MESSAGES, max_tokens=4, **kwargs)
    error = caught.value.body
    assert caught.value.status_code == 400 and error["param"] == param and error["message"]
