"""YAML recipes, shipped as package data: `path(name)` finds one by name, `names()` lists them."""

from __future__ import annotations

from pathlib import Path

_HERE = Path(__file__).parent


def names() -> list[str]:
    """Every recipe this install ships (file stems: tiny-cpu, small-gpu, blueprint-700m, …)."""
    return sorted(p.stem for p in _HERE.glob("*.yaml"))


def path(name: str) -> Path | None:
    """The shipped recipe called `name`, or None."""
    candidate = _HERE / f"{name}.yaml"
    return candidate if candidate.is_file() else None
