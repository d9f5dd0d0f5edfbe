"""`Solid`: a triangle mesh whose faces each belong to a group (a named part in one colour).

Every mesh tool works on this one value: the builder makes it from a program, the loaders make it
from files, decimation keeps each face's group, export writes one glTF primitive per group, and
the renderer shades faces in their group's colour.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import trimesh


@dataclass(frozen=True)
class Group:
    name: str  # the part's name
    rgba: tuple[int, int, int, int]
    finish: str = "matte"


@dataclass
class Solid:
    mesh: trimesh.Trimesh  # geometry only; colours come from the groups
    face_group: np.ndarray  # (faces,) int index into groups
    groups: list[Group]

    def __post_init__(self) -> None:
        self.face_group = np.asarray(self.face_group, dtype=np.int64)
        if len(self.face_group) != len(self.mesh.faces):
            raise ValueError("one group index per face")

    @classmethod
    def single(cls, mesh: trimesh.Trimesh, group: Group) -> Solid:
        return cls(mesh, np.zeros(len(mesh.faces), dtype=np.int64), [group])

    @property
    def face_colors(self) -> np.ndarray:
        """(faces, 4) uint8."""
        table = np.array([g.rgba for g in self.groups], dtype=np.uint8).reshape(-1, 4)
        return table[self.face_group]

    def with_mesh(self, mesh: trimesh.Trimesh, face_group: np.ndarray) -> Solid:
        """The same groups on new geometry, dropping groups no face uses any more."""
        used = np.unique(face_group)
        remap = np.full(len(self.groups), -1, dtype=np.int64)
        remap[used] = np.arange(len(used))
        return Solid(mesh, remap[face_group], [self.groups[i] for i in used])

    def group_meshes(self) -> list[tuple[Group, trimesh.Trimesh]]:
        """One mesh per group (vertices split where groups meet), in group order."""
        out = []
        for index, group in enumerate(self.groups):
            faces = np.flatnonzero(self.face_group == index)
            if len(faces):
                out.append((group, self.mesh.submesh([faces], append=True, repair=False)))
        return out


def transfer_groups(source: Solid, mesh: trimesh.Trimesh) -> np.ndarray:
    """Each face of `mesh` takes the group of the nearest face centroid of `source` (for meshes
    made from source by a tool that forgets face attributes: decimation, hole filling)."""
    if len(source.groups) == 1 or len(mesh.faces) == 0:
        return np.zeros(len(mesh.faces), dtype=np.int64)
    from scipy.spatial import cKDTree

    def centres(m: trimesh.Trimesh) -> np.ndarray:
        return np.asarray(m.vertices, dtype=np.float32)[m.faces].mean(axis=1)

    tree = cKDTree(centres(source.mesh), balanced_tree=False, compact_nodes=False)  # built once, queried once
    return source.face_group[tree.query(centres(mesh))[1]]
