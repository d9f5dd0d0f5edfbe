"""`quark serve` with adapters side by side, over real HTTP with the `openai` client: the ids
NAME, NAME:ADAPTER and NAME:auto (routed), requests of different adapters sharing one batch,
unknown adapters a 404 in OpenAI's shape."""

from __future__ import annotations

import re
import shutil
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import numpy as np
import openai
import pytest

from adapter_fixtures import make_routed_home
from conftest import Quark
from quark.agent.router_train import load_router
from quark.agent.routing import adapter_for
from quark.home import Home
from quark.inference import Engine, SamplingParams
from test_serve import quark_serve

PROMPTS = {"code": "def add(a, b):", "mesh": "import os", None: "class Loader:"}
MAX_TOKENS = 10
# Turns for NAME:auto; the test routes them in-process too and compares.
TURNS = ["write a Python function that parses dates", "make a low-poly mesh of a chair",
         "hi, how are you doing today?", "fix this Rust bug: a borrow checker error",
         "build a 3D teapot I can print", "draw a picture of a cat on the moon"]


@pytest.fixture(scope="module")
def adapter_home(tiny_model_home: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_routed_home(tiny_model_home, tmp_path_factory.mktemp("serve-adapters") / "home")


@pytest.fixture(scope="module")
def server(adapter_home: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with quark_serve(adapter_home, tmp_path_factory, "--max-batch", "8", "--batch-window-ms", "100") as url:
        yield url


@pytest.fixture(scope="module")
def client(server: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=server, api_key="unused", max_retries=0, timeout=120)


def _complete(client: openai.OpenAI, model: str, prompt: str) -> str:
    return client.completions.create(model=model, prompt=prompt, max_tokens=MAX_TOKENS, temperature=0).choices[0].text


def _batch_adapters_max(server: str) -> float:
    """The most distinct adapters any engine step has run together (from /metrics)."""
    text = httpx.get(server.removesuffix("/v1") + "/metrics").text
    buckets = re.findall(r'quark_batch_adapters_bucket\{le="([\d.]+)"\} ([\d.]+)', text)
    counts = {float(le): float(v) for le, v in buckets}
    total = float(re.search(r"quark_batch_adapters_count ([\d.]+)", text).group(1))
    return min((le for le, n in counts.items() if n == total), default=float("inf"))


def test_models_lists_the_base_each_adapter_and_auto(client: openai.OpenAI) -> None:
    assert [m.id for m in client.models.list().data] == ["tiny", "tiny:code", "tiny:mesh", "tiny:auto"]
    card = client.models.retrieve("tiny:code")
    assert card.id == "tiny:code" and card.owned_by == "quark" and card.model_extra["adapter"] == "code"
    assert client.models.retrieve("tiny:auto").model_extra["router"] is True


def test_requests_of_different_adapters_in_one_batch_match_each_alone(
        client: openai.OpenAI, server: str, adapter_home: Path) -> None:
    models = {adapter: f"tiny:{adapter}" if adapter else "tiny" for adapter in PROMPTS}
    with ThreadPoolExecutor(len(PROMPTS)) as pool:  # at once: the batch window gathers them into one batch
        together = dict(zip(PROMPTS, pool.map(lambda a: _complete(client, models[a], PROMPTS[a]), PROMPTS)))
    assert _batch_adapters_max(server) >= 3  # base, code and mesh rows did share a step
    alone = {a: _complete(client, models[a], PROMPTS[a]) for a in PROMPTS}
    assert together == alone
    # The in-process engine gives the same (its rows equal the merged models': test_multi_adapter).
    engine = Engine.load(adapter_home / "models" / "tiny", adapters=["code", "mesh"])
    greedy = SamplingParams(max_tokens=MAX_TOKENS, temperature=0)
    for adapter, prompt in PROMPTS.items():
        assert engine.for_adapter(adapter).complete_text(prompt, greedy).text == together[adapter]
    assert len({_complete(client, m, "def add(a, b):") for m in models.values()}) == 3  # the adapters differ


def test_auto_routes_each_request_as_the_router_decides(client: openai.OpenAI, server: str,
                                                        adapter_home: Path) -> None:
    router = load_router(Home.open(adapter_home), "tiny-router")
    decisions = router.route_many(TURNS)
    adapters = [adapter_for(d.label, ["code", "mesh"]) for d in decisions]
    assert {a for a in adapters} >= {"code", None}, "the router sends some turns to the code adapter, some to the base"
    shown = Quark(adapter_home).json("route", TURNS[0], "--model", "tiny-router")  # what `quark route` says
    assert shown["label"] == decisions[0].label and shown["adapter"] == adapters[0] and shown["base"] == "tiny"
    for turn, decision, adapter in zip(TURNS, decisions, adapters):
        messages = [{"role": "user", "content": turn}]
        raw = client.chat.completions.with_raw_response.create(model="tiny:auto", messages=messages,
                                                                max_tokens=MAX_TOKENS, temperature=0)
        reply = raw.parse()
        assert raw.headers["x-quark-route"] == decision.label and raw.headers["x-quark-adapter"] == (adapter or "base")
        assert reply.model == (f"tiny:{adapter}" if adapter else "tiny")
        direct = client.chat.completions.create(model=reply.model, messages=messages, max_tokens=MAX_TOKENS,
                                                temperature=0)
        assert reply.choices[0].message.content == direct.choices[0].message.content
    # Completions route each prompt on its own; streamed answers carry the route in their headers.
    reply = client.completions.create(model="tiny:auto", prompt=TURNS, max_tokens=4, temperature=0)
    assert [c.text for c in reply.choices] == [
        _complete_n(client, f"tiny:{a}" if a else "tiny", t) for t, a in zip(TURNS, adapters)]
    with httpx.stream("POST", f"{server}/chat/completions", json={
            "model": "tiny:auto", "messages": [{"role": "user", "content": TURNS[0]}], "max_tokens": 3,
            "stream": True}) as stream:
        assert stream.headers["x-quark-route"] == decisions[0].label
        assert b"[DONE]" in b"".join(stream.iter_bytes())


def _complete_n(client: openai.OpenAI, model: str, prompt: str) -> str:
    return client.completions.create(model=model, prompt=prompt, max_tokens=4, temperature=0).choices[0].text


def test_unknown_adapters_are_404s_and_embeddings_follow_the_adapter(client: openai.OpenAI) -> None:
    with pytest.raises(openai.NotFoundError) as missing:
        client.chat.completions.create(model="tiny:ghost", messages=[{"role": "user", "content": "hi"}])
    assert missing.value.code == "model_not_found" and missing.value.body["param"] == "model"
    assert "'tiny' has no adapter 'ghost' (adapters: code, mesh)" in missing.value.message
    with pytest.raises(openai.NotFoundError):
        client.models.retrieve("tiny:ghost")
    with pytest.raises(openai.NotFoundError):
        client.completions.create(model="other:code", prompt="x")
    base = np.array(client.embeddings.create(model="tiny", input="def f(): pass").data[0].embedding)
    code = np.array(client.embeddings.create(model="tiny:code", input="def f(): pass").data[0].embedding)
    assert base.shape == code.shape and not np.allclose(base, code, atol=1e-3)
    with pytest.raises(openai.BadRequestError) as auto:
        client.embeddings.create(model="tiny:auto", input="x")
    assert auto.value.code == "model_not_supported"


def test_bad_adapters_and_router_options_are_one_line(adapter_home: Path, tmp_path: Path) -> None:
    home = tmp_path / "home"
    shutil.copytree(adapter_home, home)
    quark = Quark(home)
    out = quark("serve", "--model", "tiny", "--port", "0", "--adapters", "code,ghost", expect=1).output
    assert "--adapters 'code,ghost': the model has no adapter ghost (adapters: code, mesh; or all, none)" in out
    out = quark("serve", "--model", "tiny", "--port", "0", "--router", "nowhere", expect=1).output
    assert "nowhere" in out and "Traceback" not in out
    Quark(home)("finetune", "router", "--model", "tiny", "--name", "x-router", "--per-label", "5")
    meta = home / "models" / "x-router" / "router.json"
    meta.write_text(meta.read_text().replace('"base": "tiny"', '"base": "other"'))
    out = quark("serve", "--model", "tiny", "--port", "0", "--router", "x-router", expect=1).output
    assert "router 'x-router' was trained on model 'other', not 'tiny'" in out
