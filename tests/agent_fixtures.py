"""Fixtures for the agent tests: model `tiny` with a 2,048-token context (tool descriptions and
results need room), copied into a fresh home per test."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch

from conftest import make_tiny_model
from quark.db import connect
from quark.home import Home


@pytest.fixture(scope="session")
def agent_model_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    home = tmp_path_factory.mktemp("agent-home")
    make_tiny_model(home, max_seq_len=2048)
    return home


@pytest.fixture
def agent_home(agent_model_home: Path, tmp_path: Path):
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    shutil.copytree(agent_model_home / "models", tmp_path / "home" / "models")
    home = Home.open(tmp_path / "home")
    home.config_path.write_text("[chat]\nmax_tokens = 40\ntemperature = 1.0\nseed = 3\n")
    yield home
    torch.set_num_threads(before)


def audit_rows(home: Home) -> list[tuple]:
    """(tool, outcome, conversation_id) of every audited call, oldest first."""
    conn = connect(home.db_path)
    try:
        return conn.execute("SELECT tool, outcome, conversation_id FROM tool_calls ORDER BY id").fetchall()
    finally:
        conn.close()
