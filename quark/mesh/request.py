"""What a request for a generated mesh may ask, checked before any model runs: the one set of
bounds the CLI, chat, the generate_mesh tool and /v1/meshes share. Light on purpose (no trimesh,
no torch), so the tool registry and the server's request models can import it cheaply."""

from __future__ import annotations

from quark.errors import QuarkError

FORMATS = ("glb", "gltf", "obj", "stl", "ply")  # what quark.mesh.export writes
MAX_PROMPT_CHARS = 1000
MAX_FACES = 1_000_000


MAX_PROMPT_CHARS = 1000
MAX_FACES = 1_000_000


def check_faces(faces: int | None) -> None:
    """A face budget a closed mesh can meet (4 faces, a tetrahedron, at least)."""
    if faces is not None and not 4 <= faces <= MAX_FACES:
        raise QuarkError(f"--faces {faces}: a closed mesh needs at least 4 faces" if faces < 4 else
                         f"--faces {faces}: at most {MAX_FACES:,}")


def check_request(prompt: str, faces: int | None, fmt: str | None) -> None:
    """Refuse a request before any work, in one line naming the value."""
    if not prompt.strip():
        raise QuarkError("the prompt is empty: say what to make, e.g. 'a red mug'")
    if len(prompt) > MAX_PROMPT_CHARS:
        raise QuarkError(f"the prompt is {len(prompt)} characters; at most {MAX_PROMPT_CHARS}")
    check_faces(faces)
    if fmt is not None and fmt.lower().lstrip(".") not in FORMATS:
        raise QuarkError(f"unknown mesh format {fmt!r} (known: {', '.join(FORMATS)})")


