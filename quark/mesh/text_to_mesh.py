"""Text → mesh asset with a loaded model: the one path `quark mesh generate`, `/mesh` in chat,
the `generate_mesh` tool and `/v1/meshes` share, so each refuses the same bad input in the same
line and writes the same asset (files under assets/ and a row in quark.db, or nothing at all).

A `MeshGenerator` holds one engine (a model, usually with its 3D-prompt LoRA adapter merged) and
a lock: front ends that serve several callers (the chat's worker threads, a server's thread pool)
take turns on it. `generator(home, model, adapter, device)` keeps the generators a process has
loaded, so a tool called twice does not load its model twice.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

from quark.errors import QuarkError
from quark.home import Home
from quark.inference import Engine
from quark.mesh.build import build_solid
from quark.mesh.generate import constrained, generate_programs
from quark.mesh.pipeline import Timings, write_asset
from quark.mesh.request import check_request


class MeshGenerator:
    """A model (and adapter) loaded once, turning prompts into recorded mesh assets."""

    def __init__(self, home: Home, model: str, *, adapter: str | None = None, device: str = "auto",
                 engine: Engine | None = None) -> None:
        self.home, self.model, self.adapter = home, model, adapter
        self.engine = engine or Engine.named(home, model, device=device, adapter=adapter)
        self.lock = threading.Lock()

    def generate(self, prompt: str, *, faces: int | None = None, fmt: str | None = None, out: Path | None = None,
                 seed: int = 0, temperature: float = 0.0, max_tokens: int = 1024, preview: bool = True,
                 timings: Timings | None = None) -> dict[str, Any]:
        """Write one asset for `prompt` and return what `quark mesh generate --json` prints: the
        asset's id, path, preview, checks (faces, watertight, volume, bounds …), program, timings."""
        check_request(prompt, faces, fmt)
        timings = timings or Timings()
        with self.lock, timings.stage("llm"):
            generated = generate_programs(self.engine, [prompt], temperature=temperature, seed=seed,
                                          max_tokens=max_tokens)[0]
        if generated.program is None:
            hint = "" if self.adapter else "; an adapter trained on `quark data synth --kind mesh` writes programs"
            raise QuarkError(f"{generated.error} — nothing was written ({generated.tokens} tokens sampled{hint})")
        try:
            with timings.stage("build"):
                solid = build_solid(generated.program)
        except QuarkError as exc:
            raise QuarkError(f"the model's program does not build: {exc} — nothing was written") from None
        result = write_asset(self.home, generated.program, solid, out=out, fmt=fmt, faces=faces, preview=preview,
                             timings=timings, prompt=prompt, seed=seed, model=self.model,
                             extra={"adapter": self.adapter, "temperature": temperature, "constrained": constrained(),
                                    "tokens": generated.tokens})
        return {**result, "prompt": prompt, "model": self.model, "adapter": self.adapter, "seed": seed,
                "tokens": generated.tokens, "program": generated.program.model_dump(mode="json", exclude_none=True)}


_loaded: dict[tuple[str, str, str | None, str], MeshGenerator] = {}
_loaded_lock = threading.Lock()


def generator(home: Home, model: str, adapter: str | None = None, device: str = "auto") -> MeshGenerator:
    """The process's generator for (home, model, adapter, device), loaded on first use."""
    key = (str(home.root.resolve()), model, adapter, device)
    with _loaded_lock:
        if key not in _loaded:
            _loaded[key] = MeshGenerator(home, model, adapter=adapter, device=device)
        return _loaded[key]


def summary(result: dict[str, Any]) -> str:
    """One line of what was made: faces, watertight, volume, bounds (the chat and the CLI show it)."""
    shut = "watertight" if result["watertight"] else "NOT watertight"
    volume = f", volume {result['volume']:.4g}" if result.get("volume") is not None else ""
    bounds = result.get("bounds")
    size = ""
    if bounds:
        extents = [hi - lo for lo, hi in zip(*bounds)]
        size = ", " + " × ".join(f"{e:.3g}" for e in extents)
    return (f"{result['faces']:,} faces ({result['faces_built']:,} built), {shut}{volume}{size}, "
            f"{result['components']} component(s)")
