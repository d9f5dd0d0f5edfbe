"""Solid → files: repair, check, decimate to a face budget, encode, render the preview, then write
everything atomically and record the asset. Each stage is timed (the benchmark reads them).

Every file is encoded in memory first and written by rename, and the database row comes last in
its own transaction; if anything fails the files already written are removed, so an error never
leaves a half-made asset behind.
"""

from __future__ import annotations

import hashlib
import io
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from quark import db
from quark.assets import asset_path, record_asset
from quark.atomic import write_bytes
from quark.home import Home
from quark.mesh.decimate import decimate
from quark.mesh.export import encode, format_of
from quark.mesh.program import Program
from quark.mesh.render import render_image
from quark.mesh.repair import checks, repair
from quark.mesh.solid import Solid


@dataclass
class Timings:
    seconds: dict[str, float] = field(default_factory=dict)

    @contextmanager
    def stage(self, name: str):
        start = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[name] = round(self.seconds.get(name, 0.0) + time.perf_counter() - start, 4)


def finish_solid(solid: Solid, fmt: str, *, faces: int | None, preview: bool, timings: Timings,
                 preview_size: int = 512) -> tuple[Solid, bytes, bytes | None, dict]:
    """Repair, decimate, encode and render in memory: (solid, file bytes, png bytes, report)."""
    with timings.stage("repair"):
        solid, repaired = repair(solid)
    faces_built = len(solid.mesh.faces)
    with timings.stage("decimate"):
        if faces is not None:
            solid = decimate(solid, target_faces=faces)
    report = {"repair": repaired, "faces_built": faces_built, **checks(solid.mesh)}
    with timings.stage("export"):
        data = encode(solid, fmt)
    png = None
    if preview:
        with timings.stage("render"):
            buffer = io.BytesIO()
            render_image(solid, preview_size).save(buffer, format="PNG")
            png = buffer.getvalue()
    return solid, data, png, report


def write_asset(home: Home, program: Program, solid: Solid, *, out: Path | None, fmt: str | None,
                faces: int | None, preview: bool, timings: Timings, prompt: str | None = None,
                seed: int | None = None, model: str | None = None, extra: dict | None = None) -> dict:
    """Finish `solid` (built from `program`), write the mesh (and preview) and record the asset row."""
    fmt = format_of(out, fmt) if out else format_of(Path("asset"), fmt or "glb")  # fails before any work
    solid, data, png, report = finish_solid(solid, fmt, faces=faces, preview=preview, timings=timings)
    if out is None:
        stem = hashlib.sha256(program.to_json().encode() + data).hexdigest()[:10]
        out = asset_path(home, "mesh", stem, fmt)
    out = Path(out)
    preview_path = out.with_suffix(".png") if png is not None else None
    written: list[Path] = []
    try:
        with timings.stage("export"):
            write_bytes(out, data)
            written.append(out)
        if png is not None:
            write_bytes(preview_path, png)
            written.append(preview_path)
        params = {"program": program.model_dump(mode="json", exclude_none=True), "format": fmt, "faces": faces,
                  "preview": str(preview_path.resolve()) if preview_path else None, "checks": report, **(extra or {})}
        asset_id = record_asset(db.connect(home.db_path), "mesh", out, prompt=prompt, seed=seed, model=model,
                                params=params)
    except BaseException:
        for path in written:
            path.unlink(missing_ok=True)
        raise
    return {"asset_id": asset_id, "path": str(out.resolve()), "preview": params["preview"], "format": fmt,
            **report, "timings": timings.seconds}
