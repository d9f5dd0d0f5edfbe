"""Shared fixtures: a fresh home per test and a CLI runner that invokes `quark` in-process."""

from __future__ import annotations

import os

# pytest-xdist runs one worker per core: one torch thread each keeps them from fighting over cores
# (tiny matmuls ran ~40x slower with two threads per worker on two busy cores).
os.environ.setdefault("OMP_NUM_THREADS", "1")

import json
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from quark.commands import app

torch.set_num_threads(1)


@pytest.fixture
def home(tmp_path: Path) -> Path:
    path = tmp_path / "home"
    path.mkdir()
    return path


class Quark:
    """Run `quark ARGS --home HOME` in-process; `.json(...)` adds --json and parses stdout."""

    def __init__(self, home: Path) -> None:
        self.home = home
        self.runner = CliRunner()

    def __call__(self, *args: str, input: str | None = None, expect: int | None = 0):
        result = self.runner.invoke(app, [*map(str, args), "--home", str(self.home)], input=input)
        if expect is not None and result.exit_code != expect:
            raise AssertionError(f"quark {' '.join(map(str, args))} exited {result.exit_code}, expected {expect}:\n"
                                 f"{result.output}\n{result.exception!r}")
        return result

    def json(self, *args: str, **kwargs):
        return json.loads(self(*args, "--json", **kwargs).stdout)


@pytest.fixture
def quark(home: Path) -> Quark:
    return Quark(home)


def _stdlib_sample(n_files: int = 12) -> list[str]:
    import sysconfig

    files = sorted(Path(sysconfig.get_paths()["stdlib"]).glob("*.py"))[:n_files]
    return [f.read_text(encoding="utf-8", errors="replace") for f in files]


def make_tiny_model(home: Path, name: str = "tiny", *, vocab_size: int = 1000, seed: int = 0,
                    max_seq_len: int = 256) -> Path:
    """A real model folder in `home`: a SentencePiece tokenizer trained on a stdlib sample and a
    randomly initialised LLM of ~100k parameters. Untrained, so its text is noise, but every code
    path (tokenizer, safetensors, KV cache, template) is the real one."""
    import torch

    from quark.home import Home
    from quark.modelfolder import save_model
    from quark.models.llm import LLM, LLMConfig
    from quark.tokenizer import train_tokenizer

    root = Home.open(home)
    tok_dir = root.tokenizer_dir(f"{name}-tok")
    tok_dir.mkdir(parents=True, exist_ok=True)
    train_tokenizer(_stdlib_sample(), tok_dir / "tokenizer", vocab_size)
    torch.manual_seed(seed)
    model = LLM(LLMConfig(vocab_size=vocab_size, n_layer=2, n_head=4, n_kv_head=2, n_embd=64, max_seq_len=max_seq_len))
    folder = root.model_dir(name)
    save_model(folder, model, tok_dir / "tokenizer.model")
    return folder


@pytest.fixture(scope="session")
def tiny_model_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A session-wide home holding model `tiny` (see make_tiny_model). Copy it before mutating."""
    home = tmp_path_factory.mktemp("tiny-home")
    make_tiny_model(home)
    return home


def pytest_report_header(config) -> list[str]:
    """The fuzz suite's seed, for replay (tests/test_fuzz_cli.py)."""
    seed = os.environ.get("QUARK_FUZZ_SEED")
    return [f"fuzz: QUARK_FUZZ_SEED={seed}" if seed else "fuzz: seed drawn per run (printed in every fuzz failure)"]
