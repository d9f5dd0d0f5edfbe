"""`quark serve` over real HTTP, driven by the official `openai` client and raw httpx streams."""

import json
import os
import queue
import re
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

import httpx
import numpy as np
import openai
import pytest

from quark.tokenizer import Tokenizer

CHAT = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Write a function."}]


@contextmanager
def quark_serve(tiny_model_home: Path, tmp_path_factory: pytest.TempPathFactory, *options: str) -> Iterator[str]:
    """`quark serve OPTIONS` on the tiny model in a subprocess on a free port; yields its base URL (…/v1)."""
    home = tmp_path_factory.mktemp("serve") / "home"
    shutil.copytree(tiny_model_home, home)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}  # tiny matmuls: threads only contend on a shared CPU
    proc = subprocess.Popen([sys.executable, "-m", "quark", "serve", "--model", "tiny", "--port", "0", "--home", str(home),
                             "--batch-window-ms", "30", "--json", *options], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env)
    lines: queue.Queue[str] = queue.Queue()
    threading.Thread(target=lambda: lines.put(proc.stdout.readline()), daemon=True).start()
    try:
        info = json.loads(lines.get(timeout=90))
        deadline = time.monotonic() + 60
        while True:  # the socket is bound before uvicorn listens: wait until it answers
            try:
                if httpx.get(info["url"] + "/health", timeout=5).status_code == 200:
                    break
            except httpx.TransportError:
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise
                time.sleep(0.2)
        assert info["auth"] is False and info["url"].startswith("http://127.0.0.1:")
        yield info["base_url"]
    finally:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()


@pytest.fixture(scope="module")
def server(tiny_model_home: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with quark_serve(tiny_model_home, tmp_path_factory) as url:
        yield url


@pytest.fixture(scope="module")
def client(server: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=server, api_key="unused", max_retries=0, timeout=120)


@pytest.fixture(scope="module")
def tok(tiny_model_home: Path) -> Tokenizer:
    return Tokenizer.load(tiny_model_home / "models" / "tiny")


def test_model_list_and_chat_completion(client: openai.OpenAI, tok: Tokenizer) -> None:
    assert [m.id for m in client.models.list().data] == ["tiny"]
    assert client.models.retrieve("tiny").owned_by == "quark"
    reply = client.chat.completions.create(model="tiny", messages=CHAT, max_tokens=8, n=2, temperature=0.9, seed=4)
    assert reply.object == "chat.completion" and len(reply.choices) == 2
    assert all(c.message.role == "assistant" and c.finish_reason in {"stop", "length"} for c in reply.choices)
    assert reply.usage.prompt_tokens == len(tok.encode_chat(CHAT))
    assert 1 <= reply.usage.completion_tokens <= 16
    assert reply.usage.total_tokens == reply.usage.prompt_tokens + reply.usage.completion_tokens
    again = client.chat.completions.create(model="tiny", messages=CHAT, max_tokens=8, n=2, temperature=0.9, seed=4)
    assert [c.message.content for c in again.choices] == [c.message.content for c in reply.choices]


def test_streamed_chat_matches_the_unstreamed_answer(client: openai.OpenAI) -> None:
    kwargs = dict(model="tiny", messages=CHAT, max_tokens=12, temperature=1.0, seed=9, stop=["\n\n"])
    whole = client.chat.completions.create(**kwargs)
    chunks = list(client.chat.completions.create(**kwargs, stream=True, stream_options={"include_usage": True}))
    assert chunks[0].choices[0].delta.role == "assistant"
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == whole.choices[0].message.content
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    assert finishes == [whole.choices[0].finish_reason]
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens == whole.usage.completion_tokens


def test_completions_streamed_and_not(client: openai.OpenAI) -> None:
    reply = client.completions.create(model="tiny", prompt=["def add(a, b):", "import os"], max_tokens=6, temperature=0)
    assert [c.index for c in reply.choices] == [0, 1] and reply.usage.completion_tokens <= 12
    stream = client.completions.create(model="tiny", prompt="def add(a, b):", max_tokens=6, temperature=0, stream=True)
    assert "".join(c.choices[0].text for c in stream) == reply.choices[0].text


def test_embeddings_are_unit_vectors_of_the_hidden_size(client: openai.OpenAI) -> None:
    result = client.embeddings.create(model="tiny", input=["def f(): pass", "import os", "def f(): pass"])
    vectors = np.array([d.embedding for d in result.data])
    assert vectors.shape == (3, 64) and np.allclose(np.linalg.norm(vectors, axis=1), 1, atol=1e-4)
    assert np.allclose(vectors[0], vectors[2], atol=1e-5) and not np.allclose(vectors[0], vectors[1])
    as_float = client.embeddings.create(model="tiny", input="import os", encoding_format="float")
    assert np.allclose(as_float.data[0].embedding, vectors[1], atol=1e-5) and result.usage.prompt_tokens > 0


def test_errors_come_back_in_openai_shape(client: openai.OpenAI, server: str) -> None:
    with pytest.raises(openai.NotFoundError) as missing:
        client.chat.completions.create(model="gpt-4o", messages=CHAT)
    assert missing.value.code == "model_not_found" and missing.value.body["param"] == "model"
    with pytest.raises(openai.BadRequestError) as wrong_type:
        client.chat.completions.create(model="tiny", messages=CHAT, max_tokens="ten")
    assert wrong_type.value.code == "invalid_type" and wrong_type.value.body["param"] == "max_tokens"
    with pytest.raises(openai.BadRequestError) as too_long:
        client.completions.create(model="tiny", prompt="word " * 600)
    assert too_long.value.code == "context_length_exceeded"
    with pytest.raises(openai.BadRequestError) as no_room:
        client.chat.completions.create(model="tiny", messages=CHAT, max_tokens=5000)
    assert no_room.value.code == "context_length_exceeded"
    with pytest.raises(openai.BadRequestError) as bad_role:
        client.chat.completions.create(model="tiny", messages=[{"role": "robot", "content": "hi"}])
    assert bad_role.value.body["param"] == "messages[0].role"

    malformed = httpx.post(f"{server}/chat/completions", content=b'{"model": "tiny", "messages": [',
                           headers={"content-type": "application/json"})
    assert malformed.status_code == 400
    assert set(malformed.json()["error"]) == {"message", "type", "param", "code"}
    unknown = httpx.get(f"{server}/nothing-here")
    assert unknown.status_code == 404 and unknown.json()["error"]["type"] == "invalid_request_error"


def _stream_chat(server: str, i: int) -> tuple[list[dict], str]:
    body = {"model": "tiny", "messages": [{"role": "user", "content": f"request {i}"}], "max_tokens": 16,
            "temperature": 0.8, "seed": i, "stream": True}
    with httpx.stream("POST", f"{server}/chat/completions", json=body, timeout=120) as response:
        assert response.status_code == 200 and response.headers["content-type"].startswith("text/event-stream")
        data = [line[len("data: "):] for line in response.iter_lines() if line.startswith("data: ")]
    return [json.loads(d) for d in data[:-1]], data[-1]


def _metric(text: str, name: str) -> float:
    match = re.search(rf"^{re.escape(name)} (\S+)$", text, re.MULTILINE)
    assert match, name
    return float(match.group(1))


def test_sixteen_concurrent_streams_complete_and_are_batched(server: str) -> None:
    root = server.removesuffix("/v1")
    with ThreadPoolExecutor(16) as pool:
        results = list(pool.map(lambda i: _stream_chat(server, i), range(16)))
    for chunks, last in results:
        assert last == "[DONE]"
        assert all(c["object"] == "chat.completion.chunk" for c in chunks)
        assert [c["choices"][0]["finish_reason"] for c in chunks][-1] in {"stop", "length"}
        assert len({c["id"] for c in chunks}) == 1
    metrics = httpx.get(f"{root}/metrics").text
    batches = _metric(metrics, "quark_batch_requests_count")
    single = _metric(metrics, 'quark_batch_requests_bucket{le="1.0"}')
    assert single < batches, "no engine batch ever held more than one request"
    assert _metric(metrics, 'quark_requests_total{endpoint="/v1/chat/completions",status="200"}') >= 16
    assert _metric(metrics, "quark_completion_tokens_total") >= 16


def test_a_closed_stream_stops_its_generation(server: str) -> None:
    root = server.removesuffix("/v1")
    steps = lambda: _metric(httpx.get(f"{root}/metrics").text, "quark_batch_size_count")  # noqa: E731
    before = steps()
    body = {"model": "tiny", "prompt": "def", "max_tokens": 200, "temperature": 1.0, "seed": 1, "stream": True}
    with httpx.stream("POST", f"{server}/completions", json=body, timeout=60) as response:
        lines = response.iter_lines()
        for _ in range(3):
            next(line for line in lines if line.startswith("data: "))
    time.sleep(0.5)  # the server notices the closed connection and the engine drops the row
    idle = steps()
    time.sleep(0.5)
    assert steps() == idle and idle - before < 200


def test_metrics_report_the_prefix_cache(client: openai.OpenAI, server: str) -> None:
    root = server.removesuffix("/v1")
    before = httpx.get(f"{root}/metrics").text
    system = {"role": "system", "content": "You review Python code and answer in one short sentence. " * 4}
    replies = [client.chat.completions.create(model="tiny", messages=[system, {"role": "user", "content": q}],
                                              max_tokens=4, temperature=0).choices[0].message.content
               for q in ("Is this fine?", "And this one?")]
    assert all(isinstance(r, str) for r in replies)
    after = httpx.get(f"{root}/metrics").text
    assert _metric(after, "quark_prefix_cache_hits_total") >= _metric(before, "quark_prefix_cache_hits_total") + 1
    assert _metric(after, "quark_prefix_cache_tokens_saved_total") >= _metric(
        before, "quark_prefix_cache_tokens_saved_total") + 32  # the system prompt's whole blocks
    assert _metric(after, "quark_prefix_cache_bytes") > 0
    assert _metric(after, "quark_prefix_cache_budget_bytes") == 512 * 2**20
