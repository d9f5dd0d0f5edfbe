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
    under the budget comes back unchanged. Each kept face keeps its own group (see surviving_faces)."""
    reduction = target_reduction(len(solid.mesh.faces), target_faces=target_faces, ratio=ratio)
    if reduction <= 0:
        return solid
    faces = np.asarray(solid.mesh.faces, dtype=np.int32)
    points, kept, collapses = fast_simplification.simplify(
        np.asarray(solid.mesh.vertices, dtype=np.float32), faces, target_reduction=reduction, agg=aggressiveness,
        return_collapses=True)
    mesh = trimesh.Trimesh(points, kept, process=False)
    several = len(solid.groups) > 1  # one group: transfer_groups gives every face group 0 without a search
    origin = surviving_faces(faces, kept, np.asarray(collapses), len(solid.mesh.vertices)) if several else None
    groups = solid.face_group[origin] if origin is not None else transfer_groups(solid, mesh)
    return solid.with_mesh(mesh, groups)


def surviving_faces(faces: np.ndarray, kept: np.ndarray, collapses: np.ndarray, vertices: int) -> np.ndarray | None:
    """For each face of the simplified mesh, the input face it is, or None if that cannot be read.

    Edge collapse never makes a face: it deletes the faces that contain a collapsed edge and moves
    the corners of the others, and fast-simplification keeps the survivors in input order and
    numbers the remaining vertices in input order. So following each vertex through the collapse
    history (`collapses[i] = (kept, removed)`) names every output face's input face exactly, where a
    nearest-centroid guess mislabels faces along a colour seam and costs a k-d tree over every input
    face. The library does not promise that order, so the result is checked face for face against
    `kept`; on a mismatch this returns None and the caller falls back to the nearest-centroid transfer."""
    root = np.arange(vertices)
    if len(collapses):
        root[collapses[:, 1]] = collapses[:, 0]
    while True:  # pointer jumping: a vertex merged into one that was merged later ends at the last
        deeper = root[root]
        if np.array_equal(deeper, root):
            break
        root = deeper
    corners = root[faces]
    alive = np.flatnonzero((corners[:, 0] != corners[:, 1]) & (corners[:, 1] != corners[:, 2])
                           & (corners[:, 0] != corners[:, 2]))
    if len(alive) != len(kept):
        return None
    used = np.unique(corners[alive])
    if not np.array_equal(np.searchsorted(used, corners[alive]), kept):
        return None
    return alive
