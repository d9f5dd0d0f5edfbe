"""Repair and checks: weld vertices, drop degenerate and duplicate faces, make winding consistent
and normals point outwards, fill small holes; then measure what a user asks of a mesh.

Built solids come out of manifold3d already closed, so repair there is a cheap confirmation;
meshes loaded from other tools' files are where it earns its keep.
"""

from __future__ import annotations

import numpy as np
import trimesh

from quark.mesh.solid import Solid, transfer_groups


def repair(solid: Solid) -> tuple[Solid, dict]:
    """A repaired copy of `solid` and a report of what changed."""
    mesh = solid.mesh.copy()
    before_vertices, before_faces = len(mesh.vertices), len(mesh.faces)
    mesh.merge_vertices(merge_tex=True, merge_norm=True)
    keep = mesh.nondegenerate_faces() & _first_of_duplicates(mesh.faces)
    face_group = solid.face_group[keep]
    mesh.update_faces(keep)
    mesh.remove_unreferenced_vertices()
    report = {"vertices_merged": before_vertices - len(mesh.vertices), "faces_removed": int((~keep).sum())}
    trimesh.repair.fix_winding(mesh)
    trimesh.repair.fix_inversion(mesh, multibody=True)
    filled = 0
    if not mesh.is_watertight:
        count = len(mesh.faces)
        trimesh.repair.fill_holes(mesh)
        filled = len(mesh.faces) - count
        if filled:  # the new faces take the group of the nearest old face
            face_group = np.concatenate([face_group, transfer_groups(solid, mesh)[count:]])
    report.update(faces_added=filled, watertight=bool(mesh.is_watertight), faces=len(mesh.faces),
                  faces_before=before_faces)
    return solid.with_mesh(mesh, face_group), report


def _first_of_duplicates(faces: np.ndarray) -> np.ndarray:
    """True for each face that is not a repeat (same three vertices) of an earlier face."""
    keep = np.zeros(len(faces), dtype=bool)
    keep[trimesh.grouping.unique_rows(np.sort(faces, axis=1))[0]] = True
    return keep


def checks(mesh: trimesh.Trimesh) -> dict:
    """Vertices, faces, watertight, volume, area, bounds, components, genus (closed meshes only:
    from the Euler characteristic, total over components: g = (2·components − χ) / 2)."""
    watertight = bool(mesh.is_watertight)
    components = int(mesh.body_count)
    euler = int(mesh.euler_number)
    return {
        "vertices": int(len(mesh.vertices)), "faces": int(len(mesh.faces)), "watertight": watertight,
        "volume": float(mesh.volume) if watertight else None, "area": float(mesh.area),
        "bounds": np.asarray(mesh.bounds, dtype=float).round(6).tolist() if len(mesh.faces) else None,
        "components": components, "genus": (2 * components - euler) // 2 if watertight else None,
    }
