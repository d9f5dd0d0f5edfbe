"""Shared by the inference benchmarks: a preset-shaped model with random weights, and a real
SentencePiece tokenizer of exactly the preset's vocabulary size, so the engine decodes every id
it samples. Random weights are fine: speed does not depend on what the weights say."""

from __future__ import annotations

import contextlib
import io
import json
import os
import platform
import subprocess
import sys
import sysconfig
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import sentencepiece as spm
import torch

from quark.inference import Engine
from quark.models.llm import LLM, PRESETS, LLMConfig
from quark.tokenizer import BOS, CHAT_SPECIALS, EOS, PAD, UNK, Tokenizer

REAL_PIECES = 600  # learned from text; the rest of the vocabulary is filler symbols


def tokenizer_of_size(vocab_size: int) -> Tokenizer:
    texts = [p.read_text(errors="replace") for p in sorted(Path(sysconfig.get_paths()["stdlib"]).glob("*.py"))[:20]]
    fillers = [f"<f{i}>" for i in range(vocab_size - REAL_PIECES)]
    model = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(line for t in texts for line in t.splitlines(keepends=True) if line.strip()),
        model_writer=model, model_type="unigram", vocab_size=vocab_size, byte_fallback=True,
        normalization_rule_name="identity", add_dummy_prefix=False, remove_extra_whitespaces=False,
        pad_id=0, unk_id=1, bos_id=2, eos_id=3, pad_piece=PAD, unk_piece=UNK, bos_piece=BOS, eos_piece=EOS,
        control_symbols=CHAT_SPECIALS, user_defined_symbols=fillers, hard_vocab_limit=False, minloglevel=2)
    return Tokenizer(model.getvalue())


def preset_engine(preset: str, *, seed: int = 0) -> Engine:
    """An Engine with the preset's shape and random weights that never stops early (EOS ignored),
    so every configuration generates exactly the tokens asked for."""
    shape = PRESETS[preset].to_dict()
    tok = tokenizer_of_size(shape["vocab_size"])
    shape["vocab_size"] = tok.vocab_size  # equal unless SentencePiece fell short of the filler budget
    torch.manual_seed(seed)
    engine = Engine(LLM(LLMConfig(**shape)).eval(), tok, preset)
    engine.stop_ids = set()
    return engine


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    return f"{cpu}, {torch.get_num_threads()} torch thread(s), torch {torch.__version__}"


def save_preset_model(home: Path, preset: str, name: str = "bench", *, seed: int = 0) -> Path:
    """A model folder `name` in `home` with the preset's shape and random weights (for `quark serve`)."""
    from quark.home import Home
    from quark.modelfolder import save_model

    engine = preset_engine(preset, seed=seed)
    tok_file = Path(home) / f"{name}-tokenizer.model"
    tok_file.parent.mkdir(parents=True, exist_ok=True)
    tok_file.write_bytes(engine.tokenizer.sp.serialized_model_proto())
    folder = Home.open(home).model_dir(name)
    save_model(folder, engine.model, tok_file)
    return folder


@contextlib.contextmanager
def served(home: Path, *, max_batch: int, threads: int = 1) -> Iterator[tuple[str, int]]:
    """`quark serve` of the home's `bench` model on a free loopback port, as a real process:
    (base URL, server pid) once /health answers; terminated on exit."""
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    server = subprocess.Popen([sys.executable, "-m", "quark", "serve", "--model", "bench", "--host", "127.0.0.1",
                               "--port", "0", "--home", str(home), "--max-batch", str(max_batch), "--json"],
                              stdout=subprocess.PIPE, text=True, env=env)
    try:
        base = json.loads(server.stdout.readline())["url"]
        for _ in range(300):
            try:
                httpx.get(f"{base}/health", timeout=5)
                break
            except httpx.TransportError:
                time.sleep(0.1)
        yield base, server.pid
    finally:
        server.terminate()
        server.wait(30)
