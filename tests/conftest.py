"""Shared fixtures: a fresh home per test and a CLI runner that invokes `quark` in-process."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from quark.commands import app


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
