"""A tiny real corpus for training tests: a tokenizer and a token set built in a test's home.

The text is a handful of standard-library modules (every Python install carries them), so the data
is real code with a skewed unigram distribution, yet small enough to train on in seconds.
"""

from __future__ import annotations

import json
import shutil
import sysconfig
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch

from quark.home import Home
from quark.tokenizer import Tokenizer, train_tokenizer
from quark.tokenizer.token_shards import TokenWriter

MODULES = ["textwrap.py", "colorsys.py", "bisect.py", "heapq.py", "fnmatch.py", "shlex.py", "string.py",
           "glob.py", "keyword.py", "numbers.py", "copy.py", "abc.py"]


def corpus() -> list[str]:
    lib = Path(sysconfig.get_paths()["stdlib"])
    return [(lib / name).read_text(encoding="utf-8") for name in MODULES]


def make_token_set(home_root: Path, name: str = "code", tokenizer: str = "tok", vocab_size: int = 512,
                   val_docs: int = 2) -> Path:
    """tokenizers/<tokenizer>/ and tokens/<name>/ in `home_root`; returns the token folder."""
    home = Home.open(home_root)
    docs = corpus()
    tok_dir = home.tokenizer_dir(tokenizer)
    tok_dir.mkdir(parents=True, exist_ok=True)
    if not (tok_dir / "tokenizer.model").is_file():
        train_tokenizer(docs, tok_dir / "tokenizer", vocab_size)
    tok = Tokenizer.load(tok_dir)
    folder = home.tokens_dir(name)
    folder.mkdir(parents=True)
    writer = TokenWriter(folder, tok.vocab_size)
    for i, doc in enumerate(docs):
        writer.add("val" if i < val_docs else "train", tok.encode(doc) + [tok.eos_id])
    writer.close(tokenizer=tokenizer)
    return folder


def unigram_entropy(folder: Path, split: str = "train") -> float:
    """Entropy (nats) of the split's token frequencies: the loss of the best context-free model."""
    meta = json.loads((folder / "meta.json").read_text())
    counts: Counter[int] = Counter()
    for entry in meta["shards"]:
        if entry["split"] == split:
            counts.update(np.fromfile(folder / entry["file"], dtype=meta["dtype"]).tolist())
    p = np.array(list(counts.values()), dtype=np.float64)
    p /= p.sum()
    return float(-(p * np.log(p)).sum())


# The tiny architecture every training test uses (~130k parameters with the 512-piece tokenizer).
TINY = ["--set", "model.n_layer=2", "--set", "model.n_embd=64", "--set", "model.n_head=4", "--set", "model.n_kv_head=2",
        "--set", "train.seq_len=64", "--set", "optim.warmup=10"]


@pytest.fixture(scope="session")
def corpus_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A home with tokenizers/tok and tokens/code, built once per session (tokenizer training is
    the slow part); `token_home` copies it into each test's own home."""
    root = tmp_path_factory.mktemp("corpus-home")
    make_token_set(root)
    return root


@pytest.fixture
def token_home(home: Path, corpus_home: Path) -> Path:
    for sub in ("tokenizers", "tokens"):
        shutil.copytree(corpus_home / sub, home / sub)
    return home


@pytest.fixture(autouse=True)
def one_thread():
    """One intra-op thread, as in the subprocesses (OMP_NUM_THREADS=1): bit-identical arithmetic
    between in-process and subprocess runs, and no thread-pool stalls on shared cores."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def metrics(home: Path, run: str, kind: str = "train") -> list[dict]:
    lines = (home / "runs" / run / "metrics.jsonl").read_text().splitlines()
    return [entry for entry in map(json.loads, lines) if entry["kind"] == kind]
