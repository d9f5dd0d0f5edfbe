"""Fixtures for the chat, memory, checkpoint and TUI tests: the `home` fixture's folder holding the
shared tiny model (so the `quark` CLI fixture sees it too), and a chat session on it."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch

from quark.chat import ChatSession
from quark.home import Home

# Short sampled replies: the untrained tiny model's greedy choice is a control token (empty text).
FAST = {"max_tokens": 3, "temperature": 1.0}


def copy_models(source_home: Path, home: Path) -> Home:
    shutil.copytree(Path(source_home) / "models", home / "models", dirs_exist_ok=True)
    return Home.open(home)


@pytest.fixture
def chat_home(tiny_model_home: Path, home: Path):
    """A fresh home with model `tiny`. Torch runs on one intra-op thread meanwhile: the tiny model
    is ~30x faster that way than on two busy shared cores."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield copy_models(tiny_model_home, home)
    torch.set_num_threads(before)


@pytest.fixture
def session(chat_home: Home):
    chat = ChatSession(chat_home)
    yield chat
    chat.close()
