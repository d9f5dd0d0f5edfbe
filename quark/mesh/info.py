"""`quark mesh info`: what a mesh file holds, measured after welding coincident vertices (files
split vertices where colours or parts meet; welding is what makes "watertight" meaningful)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from quark.mesh.export import format_of, load
from quark.mesh.program import color_name
from quark.mesh.repair import checks
from quark.mesh.solid import Solid


def parts_of(solid: Solid) -> list[dict]:
    """Per group: part name, colour (nearest palette name and hex) and its face count."""
    counts = np.bincount(solid.face_group, minlength=len(solid.groups))
    return [{"name": g.name, "color": color_name(g.rgba), "rgba": list(g.rgba), "faces": int(n)}
            for g, n in zip(solid.groups, counts)]


def file_info(path: Path) -> dict:
    path = Path(path)
    solid = load(path)
    return {"path": str(path), "format": format_of(path), "bytes": path.stat().st_size, **checks(solid.mesh),
            "parts": parts_of(solid)}
