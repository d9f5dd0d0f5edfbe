"""A PNG preview on the CPU: orthographic rays cast with Embree (embreex, through trimesh), one per
pixel at 2× supersampling, faces shaded by their normal and their group's colour.

Ray casting needs no display, no OpenGL and no GPU, and Embree traces a few hundred thousand
rays in a fraction of a second, so previews are cheap enough to make for every asset.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from PIL import Image

from quark.atomic import write_bytes
from quark.errors import QuarkError
from quark.mesh.solid import Solid

BACKGROUND = np.array([246, 246, 246], dtype=np.float64)


def first_hits(mesh, origins: np.ndarray, direction: np.ndarray) -> np.ndarray:
    """The index of the first face each ray hits (-1: none). Embree through embreex, fed float32
    arrays directly (trimesh's wrapper re-normalises every direction, a third of the time);
    without embreex, trimesh's pure-numpy caster gives the same answer, slower."""
    directions = np.broadcast_to(direction.astype(np.float32), origins.shape)
    try:
        from embreex import rtcore_scene
        from embreex.mesh_construction import TriangleMesh
    except ImportError:
        from trimesh.ray.ray_triangle import RayMeshIntersector

        return RayMeshIntersector(mesh).intersects_first(origins, directions)
    scene = rtcore_scene.EmbreeScene()
    TriangleMesh(scene, np.ascontiguousarray(mesh.triangles, dtype=np.float32))
    return np.asarray(scene.run(np.ascontiguousarray(origins, dtype=np.float32), np.ascontiguousarray(directions)))


def _camera(azimuth: float, elevation: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    az, el = np.radians(azimuth), np.radians(elevation)
    view = -np.array([np.cos(el) * np.cos(az), np.cos(el) * np.sin(az), np.sin(el)])  # camera looks along this
    right = np.cross(view, [0.0, 0.0, 1.0])
    right /= np.linalg.norm(right)
    return view, right, np.cross(right, view)


def render_image(solid: Solid, size: int = 512, *, azimuth: float = -60.0, elevation: float = 25.0) -> Image.Image:
    """An RGB image of `solid` seen from (azimuth, elevation) degrees, Z up, framed to fit."""
    if not 16 <= size <= 4096:
        raise QuarkError(f"--size {size}: expected 16 to 4096 pixels")
    mesh = solid.mesh
    view, right, up = _camera(azimuth, elevation)
    corners = np.array(mesh.bounds)
    centre = corners.mean(axis=0)
    radius = max(float(np.linalg.norm(corners[1] - corners[0])) / 2, 1e-9)
    n = 2 * size
    ticks = (np.arange(n) + 0.5) / n * 2 - 1
    xs, ys = (a.reshape(-1, 1).astype(np.float32) for a in np.meshgrid(ticks, -ticks))
    eye = (centre - view * 3 * radius).astype(np.float32)
    origins = eye + (1.05 * radius) * (xs * right.astype(np.float32) + ys * up.astype(np.float32))
    hit = first_hits(mesh, origins, view)
    image = np.tile(BACKGROUND.astype(np.float32), (len(origins), 1))
    found = hit >= 0
    normals = mesh.face_normals[hit[found]]
    key = np.array([0.4, -0.3, 0.85])
    key /= np.linalg.norm(key)
    light = 0.25 + 0.55 * np.abs(normals @ -view) + 0.25 * np.clip(normals @ key, 0, None)
    colors = solid.face_colors[hit[found], :3].astype(np.float64)
    image[found] = np.clip(colors * light[:, None], 0, 255)
    big = Image.fromarray(image.reshape(n, n, 3).round().astype(np.uint8), "RGB")
    return big.resize((size, size), Image.LANCZOS)


def render_png(solid: Solid, path: Path, size: int = 512) -> Path:
    """Render and write the PNG atomically."""
    buffer = io.BytesIO()
    render_image(solid, size).save(buffer, format="PNG", optimize=False)
    write_bytes(Path(path), buffer.getvalue())
    return Path(path)
