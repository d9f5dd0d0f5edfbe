"""The front ends on a GPU: generate, serve, chat and eval (perplexity) on CUDA, in bf16 and
quantized (bitsandbytes int8 and nf4). Skipped where torch sees no CUDA device; on a GPU machine

    pytest -m cuda

runs exactly these. The quantized cases need the `cuda` extra (pip install -e '.[cuda]').
"""

from __future__ import annotations

import importlib.util
import json
import math
import os
import queue
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest
import torch

from quark.chat import ChatSession
from quark.home import Home
from quark.tokenizer import Tokenizer
from quark.tokenizer.token_shards import TokenWriter
from tests.chat_fixtures import copy_models

pytestmark = [pytest.mark.cuda,
              pytest.mark.skipif(not torch.cuda.is_available(),
                                 reason="no CUDA device (these run with pytest -m cuda)")]

MODES = [pytest.param(None, id="bf16"),
         *(pytest.param(mode, id=mode, marks=pytest.mark.skipif(
             importlib.util.find_spec("bitsandbytes") is None,
             reason="bitsandbytes is not installed (pip install -e '.[cuda]')")) for mode in ("int8", "nf4"))]


def _quantize(mode: str | None) -> list[str]:
    return ["--quantize", mode] if mode else []


@pytest.fixture
def gpu_home(tiny_model_home: Path, home: Path) -> Home:
    """A home with model `tiny` and a token set `ts` (a val split of its own tokenizer's ids)."""
    root = copy_models(tiny_model_home, home)
    tok = Tokenizer.load(root.model_dir("tiny"))
    ids = tok.encode(Path(json.__file__).read_text())[:2000]
    writer = TokenWriter(root.tokens_dir("ts"), tok.vocab_size)
    writer.add("val", ids)
    writer.close()
    return root


@pytest.mark.parametrize("mode", MODES)
def test_generate_on_cuda(quark, gpu_home: Home, mode: str | None) -> None:
    out = quark.json("generate", "-m", "tiny", "-p", "def add(a, b):", "--max-tokens", "8", "--temperature", "0",
                     "--device", "cuda", *_quantize(mode))
    assert out["device"].startswith("cuda") and out["quantize"] == mode
    assert 1 <= out["usage"]["completion_tokens"] <= 8


@pytest.mark.parametrize("mode", MODES)
def test_serve_on_cuda_answers_a_request(gpu_home: Home, mode: str | None) -> None:
    proc = subprocess.Popen([sys.executable, "-m", "quark", "serve", "-m", "tiny", "--port", "0", "--device", "cuda",
                             *_quantize(mode), "--home", str(gpu_home.root), "--json"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=dict(os.environ))
    lines: queue.Queue[str] = queue.Queue()
    threading.Thread(target=lambda: lines.put(proc.stdout.readline()), daemon=True).start()
    try:
        info = json.loads(lines.get(timeout=180))
        assert info["device"].startswith("cuda") and info["quantize"] == mode
        deadline = time.monotonic() + 120
        while True:
            try:
                reply = httpx.post(info["base_url"] + "/completions", timeout=120,
                                   json={"model": "tiny", "prompt": "import os", "max_tokens": 6, "temperature": 0})
                break
            except httpx.TransportError:
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise
                time.sleep(0.2)
        assert reply.status_code == 200, reply.text
        assert reply.json()["usage"]["completion_tokens"] >= 1
    finally:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()


@pytest.mark.parametrize("mode", MODES)
def test_scripted_chat_on_cuda(quark, gpu_home: Home, mode: str | None) -> None:
    out = quark.json("chat", "-m", "tiny", "--message", "My name is Ada.", "--max-tokens", "4", "--temperature", "1",
                     "--device", "cuda", *_quantize(mode))
    assert out["conversation_id"] >= 1
    session = ChatSession(gpu_home, model="tiny", device="cuda", quantize=mode)
    try:
        engine = session.use_model()
        assert engine.device.type == "cuda" and engine.dtype is torch.bfloat16
        assert (getattr(engine.model, "quantization", None) or {}).get("mode") == mode
    finally:
        session.close()


@pytest.mark.parametrize("mode", MODES)
def test_perplexity_on_cuda(quark, gpu_home: Home, mode: str | None) -> None:
    out = quark.json("eval", "perplexity", "-m", "tiny", "--data", "ts", "--window", "128", "--device", "cuda",
                     *_quantize(mode))
    metrics = out["metrics"]
    assert math.isfinite(metrics["perplexity"]) and metrics["tokens"] > 0
    # An untrained model scores about the vocabulary size; quantized it must stay close to bf16.
    assert 100 < metrics["perplexity"] < 10_000
