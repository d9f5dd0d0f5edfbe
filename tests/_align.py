"""Shared set-up for the alignment tests: tiny models on the 512-piece test tokenizer, and the
built-in synthetic data (quark.data.synth) written once per test session."""

from __future__ import annotations

import json
import random
import shutil
from pathlib import Path

import pytest
import torch

from _train_data import corpus_home, one_thread  # noqa: F401  (fixtures re-exported to the test modules)
from quark.data import synth
from quark.home import Home
from quark.modelfolder import save_model
from quark.models.llm import LLM, LLMConfig
from quark.tokenizer import Tokenizer

# ~130k parameters with the 512-piece tokenizer.
TINY = dict(n_layer=2, n_head=4, n_kv_head=2, n_embd=64, max_seq_len=256)


def make_model(home: Path, name: str, *, seed: int = 0) -> Path:
    """models/<name>/: a randomly initialised tiny LLM with the test tokenizer `tok`."""
    root = Home.open(home)
    tokenizer = root.tokenizer_dir("tok") / "tokenizer.model"
    torch.manual_seed(seed)
    model = LLM(LLMConfig(vocab_size=512, **TINY))
    save_model(root.model_dir(name), model, tokenizer)
    return root.model_dir(name)


@pytest.fixture(scope="session")
def synth_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder with chat/ (every kind) and prefs/ (20% held out) as quark.data.synth writes them."""
    root = tmp_path_factory.mktemp("synth")
    synth.write_chat(root / "chat", seed=0, val_fraction=0.05)
    synth.write_preferences(root / "prefs", seed=0, val_fraction=0.2)
    return root


@pytest.fixture
def align_home(home: Path, corpus_home: Path, synth_data: Path) -> Path:  # noqa: F811
    """A home with tokenizers/tok, tokens/code, data/chat, data/prefs and a random tiny model `rand`."""
    for sub in ("tokenizers", "tokens"):
        shutil.copytree(corpus_home / sub, home / sub)
    for name in ("chat", "prefs"):
        shutil.copytree(synth_data / name, home / "data" / name)
    make_model(home, "rand")
    return home


def metrics(home: Path, run: str, kind: str = "train") -> list[dict]:
    lines = (home / "runs" / run / "metrics.jsonl").read_text().splitlines()
    return [entry for entry in map(json.loads, lines) if entry["kind"] == kind]


# PPO: a reward that is easy to learn (more digits is better), on prompts about these topics.
TOPICS = ["lists", "files", "dates", "sockets", "threads", "strings", "paths", "numbers", "dicts", "sets",
          "bytes", "errors", "tests", "loops", "classes", "modules"]
ASKS = ["Tell me about {}.", "What are {}?", "Explain {} to me."]


def digit_pairs(tokenizer: Tokenizer, count: int, seed: int) -> list[dict]:
    """Preference rows: two replies of random pieces, the chosen one with more digits in it."""
    rng = random.Random(seed)
    words = [i for i in range(tokenizer.vocab_size) if tokenizer.decode([i]).strip().isalpha()]
    digits = [tokenizer.encode(str(d))[-1] for d in range(10)]

    def reply(n_digits: int) -> str:
        ids = [rng.choice(words) for _ in range(rng.randint(6, 14))]
        for _ in range(n_digits):
            ids[rng.randrange(len(ids))] = rng.choice(digits)
        return tokenizer.decode(ids)

    rows = []
    for _ in range(count):
        low = rng.randint(0, 2)
        rows.append({"prompt": f"Tell me about {rng.choice(TOPICS)}.", "chosen": reply(low + rng.randint(2, 6)),
                     "rejected": reply(low)})
    return rows
