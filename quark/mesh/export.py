"""Mesh files: write a Solid as GLB, glTF, OBJ, STL or PLY, and read any of them back.

glTF/GLB keep the groups as named nodes with a PBR material each (finish → metallic/roughness)
and are written Y-up as the glTF spec asks (Quark's programs are Z-up; reading converts back).
PLY keeps face colours, OBJ vertex colours (vertices are split per group, so colours stay crisp),
STL geometry only. Writes go to a temporary file renamed into place, so a failed export leaves
nothing behind; reads turn any parser failure into one line naming the file.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import trimesh
from trimesh.visual.material import PBRMaterial

from quark.atomic import write_bytes
from quark.errors import QuarkError
from quark.inputs import MiB, read_bytes_file
from quark.mesh.program import DEFAULT_FINISH, FINISHES, rgba
from quark.mesh.request import FORMATS  # re-exported: export.FORMATS
from quark.mesh.solid import Group, Solid

MESH_FILE_CAP = 1024 * MiB  # read whole into memory to parse
_Z_UP_TO_Y_UP = np.array([[1, 0, 0, 0], [0, 0, 1, 0], [0, -1, 0, 0], [0, 0, 0, 1]], dtype=np.float64)


def format_of(path: Path, given: str | None = None) -> str:
    """The format named by `path`'s extension (or `given` when the path has none that we know)."""
    ext = Path(path).suffix.lower().lstrip(".")
    fmt = ext if ext in FORMATS else None
    if given is not None:
        given = given.lower().lstrip(".")
        if given not in FORMATS:
            raise QuarkError(f"unknown mesh format {given!r} (known: {', '.join(FORMATS)})")
        if fmt and fmt != given:
            raise QuarkError(f"{path}: the extension says {fmt} but --format says {given}")
        fmt = given
    if fmt is None:
        raise QuarkError(f"{path}: unknown mesh format {('.' + ext) if ext else '(no extension)'} "
                         f"(known: {', '.join('.' + f for f in FORMATS)})")
    return fmt


def _scene(solid: Solid) -> trimesh.Scene:
    scene = trimesh.Scene()
    used: dict[str, int] = {}
    for group, mesh in solid.group_meshes():
        used[group.name] = used.get(group.name, 0) + 1
        name = group.name if used[group.name] == 1 else f"{group.name}#{used[group.name]}"  # one part, several colours
        metallic, roughness = FINISHES.get(group.finish, FINISHES[DEFAULT_FINISH])
        mesh = mesh.copy()
        mesh.apply_transform(_Z_UP_TO_Y_UP)
        mesh.visual = trimesh.visual.TextureVisuals(material=PBRMaterial(
            name=name, baseColorFactor=list(group.rgba), metallicFactor=metallic, roughnessFactor=roughness))
        scene.add_geometry(mesh, node_name=name, geom_name=name)
    return scene


def _split(solid: Solid) -> trimesh.Trimesh:
    """One mesh, vertices split per group, coloured per face (for OBJ and PLY)."""
    pieces = []
    for group, mesh in solid.group_meshes():
        mesh = mesh.copy()
        mesh.visual = trimesh.visual.ColorVisuals(mesh, face_colors=np.tile(group.rgba, (len(mesh.faces), 1)))
        pieces.append(mesh)
    return trimesh.util.concatenate(pieces)


def encode(solid: Solid, fmt: str) -> bytes:
    """The file's bytes: deterministic for a given solid."""
    if fmt == "glb":
        return _scene(solid).export(file_type="glb")
    if fmt == "gltf":
        return trimesh.exchange.gltf.export_gltf(_scene(solid), embed_buffers=True)["model.gltf"]
    if fmt == "stl":
        return trimesh.Trimesh(solid.mesh.vertices, solid.mesh.faces, process=False).export(file_type="stl")
    if fmt == "ply":
        return _split(solid).export(file_type="ply", encoding="binary")
    if fmt == "obj":
        mesh = _split(solid)
        mesh.visual.vertex_colors = mesh.visual.vertex_colors  # face colours -> per-vertex (vertices are split)
        text = trimesh.exchange.obj.export_obj(mesh, include_color=True, include_normals=False, include_texture=False,
                                               header="Quark mesh")
        return text.encode("utf-8")
    raise QuarkError(f"unknown mesh format {fmt!r} (known: {', '.join(FORMATS)})")


def save(solid: Solid, path: Path, fmt: str | None = None) -> Path:
    """Write `solid` to `path` atomically in `fmt` (default: by extension)."""
    path = Path(path)
    write_bytes(path, encode(solid, fmt or format_of(path)))
    return path


# --- reading ----------------------------------------------------------------------------------

def _face_rgba(mesh: trimesh.Trimesh) -> np.ndarray:
    visual = mesh.visual
    default = np.tile(rgba(None), (len(mesh.faces), 1)).astype(np.uint8)
    kind = getattr(visual, "kind", None)
    if kind == "face":
        return np.asarray(visual.face_colors, dtype=np.uint8)
    if kind == "vertex":
        return np.asarray(visual.vertex_colors, dtype=np.uint8)[mesh.faces[:, 0]]
    material = getattr(visual, "material", None)
    color = getattr(material, "baseColorFactor", None)
    if color is None and material is not None and hasattr(material, "main_color"):
        color = material.main_color
    if color is not None:
        raw = np.asarray(color).ravel()
        color = raw.astype(np.float64) * (255.0 if raw.dtype.kind == "f" and raw.max() <= 1.0 else 1.0)
        color = np.concatenate([color, [255.0] * (4 - len(color))])[:4]
        return np.tile(np.clip(color, 0, 255).round().astype(np.uint8), (len(mesh.faces), 1))
    return default


def _pieces(loaded, fmt: str) -> list[tuple[str, trimesh.Trimesh]]:
    if isinstance(loaded, trimesh.Trimesh):
        return [("mesh", loaded)]
    if not isinstance(loaded, trimesh.Scene):
        return []
    pieces = []
    for node in loaded.graph.nodes_geometry:
        transform, geom = loaded.graph[node]
        mesh = loaded.geometry.get(geom)
        if isinstance(mesh, trimesh.Trimesh) and len(mesh.faces):
            mesh = mesh.copy()
            mesh.apply_transform(transform if fmt not in ("glb", "gltf") else np.linalg.inv(_Z_UP_TO_Y_UP) @ transform)
            pieces.append((str(node).split("#")[0], mesh))
    return pieces


def load(path: Path) -> Solid:
    """Read a mesh file into a Solid: vertices welded by position, one group per (name, colour)."""
    path = Path(path)
    fmt = format_of(path)
    data = read_bytes_file(path, "mesh file", max_bytes=MESH_FILE_CAP)
    if not data.strip():
        raise QuarkError(f"{path}: the file is empty")
    try:
        loaded = trimesh.load(io.BytesIO(data), file_type=fmt, process=False)
        pieces = _pieces(loaded, fmt)
    except Exception as exc:  # parsers raise anything from KeyError to struct.error on a corrupt file
        raise QuarkError(f"{path}: not a readable {fmt.upper()} file ({type(exc).__name__}: "
                         f"{str(exc)[:100]})") from None
    if not pieces:
        raise QuarkError(f"{path}: holds no triangles")
    groups: list[Group] = []
    meshes, face_groups = [], []
    for name, mesh in pieces:
        colors = _face_rgba(mesh)
        unique, inverse = np.unique(colors, axis=0, return_inverse=True)
        index = []
        for color in unique:
            group = Group(name, tuple(int(c) for c in color), DEFAULT_FINISH)
            if group not in groups:
                groups.append(group)
            index.append(groups.index(group))
        meshes.append(trimesh.Trimesh(mesh.vertices, mesh.faces, process=False))
        face_groups.append(np.asarray(index)[inverse.ravel()])
    mesh = trimesh.util.concatenate(meshes) if len(meshes) > 1 else meshes[0]
    mesh.merge_vertices(merge_tex=True, merge_norm=True)
    return Solid(mesh, np.concatenate(face_groups), groups)
