"""Decimation to a face budget with fast-simplification (quadric edge collapse).

fast-simplification's `target_reduction` is the fraction of faces to REMOVE (0.9 keeps a tenth),
not the fraction to keep; `target_faces` turns a face budget into that fraction once, here.
"""

from __future__ import annotations

import fast_simplification
import numpy as np
import trimesh

from quark.errors import QuarkError
from quark.mesh.solid import Solid, transfer_groups


def target_reduction(faces: int, *, target_faces: int | None = None, ratio: float | None = None) -> float:
    """The fraction to remove for a face budget (`target_faces`) or a kept share (`ratio`, 0–1]."""
    if (target_faces is None) == (ratio is None):
        raise QuarkError("give exactly one of a face budget (--faces) or a ratio (--ratio)")
    if target_faces is not None:
        if target_faces < 4:
            raise QuarkError(f"--faces {target_faces}: a closed mesh needs at least 4 faces")
        return max(0.0, 1.0 - target_faces / faces)
    if not 0 < ratio <= 1:
        raise QuarkError(f"--ratio {ratio}: expected a share of faces to keep, in (0, 1]")
    return 1.0 - ratio


def decimate(solid: Solid, *, target_faces: int | None = None, ratio: float | None = None,
             aggressiveness: int = 7) -> Solid:
    """`solid` simplified to about `target_faces` faces (or `ratio` of its faces); a mesh already
    under the budget comes back unchanged. Faces keep the group of the nearest original face."""
    reduction = target_reduction(len(solid.mesh.faces), target_faces=target_faces, ratio=ratio)
    if reduction <= 0:
        return solid
    points, faces = fast_simplification.simplify(
        np.asarray(solid.mesh.vertices, dtype=np.float32), np.asarray(solid.mesh.faces, dtype=np.int32),
        target_reduction=reduction, agg=aggressiveness)
    mesh = trimesh.Trimesh(points, faces, process=False)
    return solid.with_mesh(mesh, transfer_groups(solid, mesh))
