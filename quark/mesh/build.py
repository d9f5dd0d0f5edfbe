"""Program → Solid: each primitive made and transformed in manifold3d, booleans evaluated there,
parts unioned into one solid; faces keep the part and colour of the primitive they came from.

manifold3d's booleans are exact and always return a manifold, so a validated program always
gives a closed, oriented mesh. Colours survive the booleans through manifold's original ids:
every primitive is marked `as_original()`, and each output triangle run names the primitive it
came from. A node's colour and finish apply to its subtree; the cut faces left by a difference
take the colour of its first child (a mug's inside is the mug's colour), unless the subtracted
child sets its own.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import manifold3d as mf
import numpy as np
import trimesh

from quark.errors import QuarkError
from quark.mesh.program import DEFAULT_FINISH, Boolean, Program, polygon_region, rgba
from quark.mesh.solid import Group, Solid


@dataclass
class _Builder:
    segments: int
    groups: list[Group] = field(default_factory=list)
    by_original: dict[int, int] = field(default_factory=dict)  # manifold original id -> group index

    def group(self, part: str, color: str | None, finish: str | None) -> int:
        g = Group(part, rgba(color), finish or DEFAULT_FINISH)
        if g not in self.groups:
            self.groups.append(g)
        return self.groups.index(g)

    def node(self, node, part: str, color: str | None, finish: str | None, where: str) -> mf.Manifold:
        color, finish = node.color or color, node.finish or finish
        if isinstance(node, Boolean):
            first = self.node(node.children[0], part, color, finish, f"{where}.children.0")
            # the cut faces of a difference are the first child's colour (unless a child sets its own)
            cut_color = node.children[0].color or color if node.type == "difference" else color
            rest = [self.node(c, part, cut_color, finish, f"{where}.children.{i}")
                    for i, c in enumerate(node.children[1:], 1)]
            op = {"union": mf.OpType.Add, "difference": mf.OpType.Subtract,
                  "intersection": mf.OpType.Intersect}[node.type]
            solid = mf.Manifold.batch_boolean([first, *rest], op)
            if solid.is_empty():
                raise QuarkError(f"{where} ({node.type}) leaves nothing: its children do not overlap as it needs")
        else:
            solid = self.primitive(node, where).as_original()
            self.by_original[solid.original_id()] = self.group(part, color, finish)
        return _transformed(solid, node)

    def primitive(self, node, where: str) -> mf.Manifold:
        s = self.segments
        if node.type == "box":
            m = mf.Manifold.cube(tuple(node.size), True)
        elif node.type == "sphere":
            m = mf.Manifold.sphere(node.radius, s)
        elif node.type == "cylinder":
            m = mf.Manifold.cylinder(node.height, node.radius, node.radius, s, True)
        elif node.type == "cone":
            m = mf.Manifold.cylinder(node.height, node.radius, node.top_radius, s, True)
        elif node.type == "torus":
            ring = mf.CrossSection.circle(node.tube_radius, max(8, s // 2)).translate((node.radius, 0))
            m = ring.revolve(s)
        elif node.type == "capsule":
            cap = mf.Manifold.sphere(node.radius, s)
            m = mf.Manifold.batch_hull([cap.translate((0, 0, -node.height / 2)),
                                        cap.translate((0, 0, node.height / 2))])
        else:  # extrude
            m = polygon_region(node.points).extrude(node.height).translate((0, 0, -node.height / 2))
        if m.is_empty() or m.volume() <= 0:
            raise QuarkError(f"{where} ({node.type}) is not a volume")
        return m


def _transformed(m: mf.Manifold, node) -> mf.Manifold:
    if node.scale:
        m = m.scale(tuple(node.scale))
    if node.rotate:
        m = m.rotate(tuple(node.rotate))
    if node.translate:
        m = m.translate(tuple(node.translate))
    return m


def build_solid(program: Program) -> Solid:
    """Build every part and union them into one closed solid (QuarkError if a boolean leaves nothing)."""
    builder = _Builder(program.segments)
    parts = [builder.node(p.shape, p.name, p.color, p.finish, f"parts.{i}.shape") for i, p in enumerate(program.parts)]
    solid = parts[0] if len(parts) == 1 else mf.Manifold.batch_boolean(parts, mf.OpType.Add)
    if solid.status() != mf.Error.NoError:
        raise QuarkError(f"the program did not build: manifold3d reports {solid.status().name}")
    mesh = solid.to_mesh()
    vertices = np.asarray(mesh.vert_properties, dtype=np.float64)[:, :3]
    faces = np.asarray(mesh.tri_verts, dtype=np.int64)
    face_group = np.zeros(len(faces), dtype=np.int64)
    runs = np.asarray(mesh.run_index, dtype=np.int64) // 3
    for start, stop, original in zip(runs[:-1], runs[1:], np.asarray(mesh.run_original_id)):
        face_group[start:stop] = builder.by_original[int(original)]
    out = Solid(trimesh.Trimesh(vertices, faces, process=False), face_group, builder.groups)
    return out.with_mesh(out.mesh, out.face_group)
