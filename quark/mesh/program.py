"""The scene program: a small JSON language for solids, defined by pydantic models.

A program is a list of named parts; each part is a tree of nodes. Leaves are primitives (box,
sphere, cylinder, cone, torus, capsule, extruded polygon); inner nodes are booleans (union,
difference, intersection). Every node may carry a transform (scale, then rotate, then
translate), a colour and a finish. Z is up; lengths are in arbitrary units.

The bounds are the point: lengths, counts, nesting depth and the estimated triangle count are
all capped, and polygons must be simple with a positive area, so every program that validates
builds in bounded time (quark.mesh.build). The JSON schema (`program_schema()`) comes straight
from these models, so a grammar-constrained decoder can hold a language model to it; it uses
only what pydantic emits (`$defs` and `$ref` for the recursive node, `const`/`enum`, numeric
and length bounds, string patterns).

    {"parts": [{"name": "red_mug", "color": "red", "shape": {"type": "difference", "children": [
        {"type": "cylinder", "radius": 1.0, "height": 2.0},
        {"type": "cylinder", "radius": 0.85, "height": 2.0, "translate": [0, 0, 0.15]}]}}]}
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Annotated, Any, Literal, Optional, Union

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from quark.errors import QuarkError
from quark.inputs import MiB, read_text_file

MAX_NODES = 256  # every node of every part, booleans included
MAX_DEPTH = 8  # a part's shape is depth 1; each boolean adds a level
MAX_PARTS = 16
MAX_CHILDREN = 16
MAX_POLYGON_POINTS = 64
MAX_TRIANGLES = 2_000_000  # estimated before building, from each primitive's segments
MAX_LENGTH = 100.0
MAX_OFFSET = 1000.0
PROGRAM_CAP = 4 * MiB  # a program within MAX_NODES is a few KiB of JSON

COLORS: dict[str, tuple[int, int, int]] = {
    "red": (200, 40, 40), "orange": (235, 130, 30), "yellow": (235, 200, 40), "green": (50, 160, 70),
    "blue": (40, 90, 200), "purple": (130, 60, 170), "pink": (230, 120, 170), "brown": (130, 85, 50),
    "black": (30, 30, 30), "white": (235, 235, 235), "gray": (140, 140, 140), "silver": (190, 190, 200),
    "gold": (210, 170, 50),
}
FINISHES: dict[str, tuple[float, float]] = {  # name -> (metallic, roughness), glTF PBR factors
    "matte": (0.0, 0.9), "glossy": (0.0, 0.3), "metal": (1.0, 0.35),
}
DEFAULT_COLOR = "gray"
DEFAULT_FINISH = "matte"

Length = Annotated[float, Field(gt=0, le=MAX_LENGTH)]
Offset = Annotated[float, Field(ge=-MAX_OFFSET, le=MAX_OFFSET)]
Angle = Annotated[float, Field(ge=-360, le=360)]
Factor = Annotated[float, Field(gt=0, le=100)]
Color = Annotated[str, Field(pattern="^(" + "|".join(COLORS) + "|#[0-9a-fA-F]{6})$",
                             description="a colour name or #rrggbb")]
Finish = Literal["matte", "glossy", "metal"]
Vec3 = Annotated[list[Offset], Field(min_length=3, max_length=3)]
Angles3 = Annotated[list[Angle], Field(min_length=3, max_length=3)]
Scale3 = Annotated[list[Factor], Field(min_length=3, max_length=3)]
Point2 = Annotated[list[Annotated[float, Field(ge=-MAX_LENGTH, le=MAX_LENGTH)]], Field(min_length=2, max_length=2)]


class _Node(BaseModel):
    """What every node has: an optional transform (scale, rotate in degrees about X then Y then Z,
    translate), colour and finish. A colour or finish applies to the node's whole subtree unless
    a descendant sets its own."""

    model_config = ConfigDict(extra="forbid")

    type: str  # each node kind narrows this to its literal (kept first, so JSON starts with the kind)
    translate: Optional[Vec3] = None
    rotate: Optional[Angles3] = None
    scale: Optional[Scale3] = None
    color: Optional[Color] = None
    finish: Optional[Finish] = None


class Box(_Node):
    type: Literal["box"]
    size: Annotated[list[Length], Field(min_length=3, max_length=3)]


class Sphere(_Node):
    type: Literal["sphere"]
    radius: Length


class Cylinder(_Node):
    """Axis along Z, centred on the origin."""

    type: Literal["cylinder"]
    radius: Length
    height: Length


class Cone(_Node):
    """Axis along Z, centred on the origin; `radius` at the bottom, `top_radius` (0: a point) at the top."""

    type: Literal["cone"]
    radius: Length
    height: Length
    top_radius: Annotated[float, Field(ge=0, le=MAX_LENGTH)] = 0.0


class Torus(_Node):
    """A ring in the XY plane around Z: `radius` to the tube's centre, `tube_radius` of the tube.
    A tube wider than the radius makes a spindle torus (the part across the axis is dropped), so
    every pair of positive radii is a solid."""

    type: Literal["torus"]
    radius: Length
    tube_radius: Length


class Capsule(_Node):
    """A cylinder of `height` along Z capped by two hemispheres (total length height + 2 radius)."""

    type: Literal["capsule"]
    radius: Length
    height: Length


class Extrude(_Node):
    """A polygon in the XY plane extruded along Z by `height`, centred on z = 0. Its region is
    what the outline winds around (non-zero rule), so crossing edges are fine; it needs an area."""

    type: Literal["extrude"]
    points: Annotated[list[Point2], Field(min_length=3, max_length=MAX_POLYGON_POINTS)]
    height: Length

    @model_validator(mode="after")
    def _has_area(self) -> Extrude:
        if polygon_region(self.points).area() < 1e-6:
            raise ValueError("the polygon encloses no area (its points are collinear or repeated): it is not a volume")
        return self


class Boolean(_Node):
    """union: everything in any child; difference: the first child minus all the others;
    intersection: only what every child shares."""

    type: Literal["union", "difference", "intersection"]
    children: Annotated[list[Node], Field(min_length=2, max_length=MAX_CHILDREN)]


Node = Annotated[Union[Box, Sphere, Cylinder, Cone, Torus, Capsule, Extrude, Boolean], Field(discriminator="type")]
Boolean.model_rebuild()


class Part(BaseModel):
    """A named piece of the object; parts are joined (unioned) into one solid, and keep their
    names and colours in the exported file (two parts may share a name: they export as one)."""

    model_config = ConfigDict(extra="forbid")

    name: Annotated[str, Field(pattern="^[a-z][a-z0-9_-]{0,31}$")]
    color: Optional[Color] = None
    finish: Optional[Finish] = None
    shape: Node


class Program(BaseModel):
    """A scene program: named parts, and the number of segments used for round surfaces."""

    model_config = ConfigDict(extra="forbid")

    parts: Annotated[list[Part], Field(min_length=1, max_length=MAX_PARTS)]
    segments: Annotated[int, Field(ge=8, le=128)] = 48

    @model_validator(mode="after")
    def _bounded(self) -> Program:
        nodes = sum(count_nodes(p.shape) for p in self.parts)
        if nodes > MAX_NODES:
            raise ValueError(f"{nodes} nodes; at most {MAX_NODES}")
        triangles = sum(estimate_triangles(leaf, self.segments) for p in self.parts for leaf in leaves(p.shape))
        if triangles > MAX_TRIANGLES:
            raise ValueError(f"about {triangles:,} triangles before booleans; at most {MAX_TRIANGLES:,} "
                             "(lower `segments` or use fewer round primitives)")
        return self

    def to_json(self) -> str:
        """Canonical JSON (defaults left out, json.dumps' separators — those the grammar of
        quark.inference.grammar requires): what the training data and the model write."""
        return json.dumps(self.model_dump(mode="json", exclude_none=True, exclude_defaults=True))


# --- helpers the validators and the builder share ---------------------------------------------

def count_nodes(node: Any) -> int:
    return 1 + sum(count_nodes(c) for c in getattr(node, "children", ()))


def leaves(node: Any) -> list:
    """The primitives of a subtree, left to right."""
    if isinstance(node, Boolean):
        return [leaf for c in node.children for leaf in leaves(c)]
    return [node]


def estimate_triangles(leaf: Any, segments: int) -> int:
    """An upper estimate of a primitive's triangles at `segments`, for the build-cost cap."""
    return {"box": 12, "extrude": 4 * MAX_POLYGON_POINTS, "cylinder": 4 * segments, "cone": 4 * segments,
            "sphere": segments * segments, "capsule": segments * segments + 4 * segments,
            "torus": 2 * segments * segments}[leaf.type]


def polygon_region(points: list[list[float]]):
    """The region a polygon outline encloses (manifold3d CrossSection, non-zero winding rule): the
    same call the builder extrudes, so validation and building agree on what has an area."""
    import manifold3d as mf
    import numpy as np

    return mf.CrossSection([np.asarray(points, dtype=np.float64)], mf.FillRule.NonZero)


LEAF_MODELS = ("Box", "Sphere", "Cylinder", "Cone", "Torus", "Capsule", "Extrude")


def program_schema() -> dict:
    """The JSON schema of a Program, for constrained decoding and for documentation.

    pydantic's schema is recursive (a boolean's children are nodes, booleans included). Here the
    recursion is unrolled into one `BooleanK` per level down to MAX_DEPTH, so the schema itself
    bounds the depth and a grammar compiler sees no cycle; the discriminated unions become plain
    `anyOf`s (each node's `type` is a `const`, so only one branch ever matches)."""
    schema = Program.model_json_schema()
    defs = schema["$defs"]
    boolean = defs.pop("Boolean")

    def nodes(depth: int) -> dict:
        refs = [{"$ref": f"#/$defs/{name}"} for name in LEAF_MODELS]
        if depth < MAX_DEPTH:
            refs.append({"$ref": f"#/$defs/Boolean{depth}"})
        return {"anyOf": refs}

    for depth in range(1, MAX_DEPTH):
        level = copy.deepcopy(boolean)
        level["title"] = f"Boolean{depth}"
        level["properties"]["children"]["items"] = nodes(depth + 1)
        defs[f"Boolean{depth}"] = level
    defs["Part"]["properties"]["shape"] = {**nodes(1), "title": "Shape"}
    return _without_nulls(schema)


def _without_nulls(value: Any) -> Any:
    """`anyOf: [X, null]` → X: an optional field is left out, never written as null (fewer ways
    to say the same program, and fewer tokens for a grammar to allow)."""
    if isinstance(value, list):
        return [_without_nulls(v) for v in value]
    if not isinstance(value, dict):
        return value
    value = {k: _without_nulls(v) for k, v in value.items()}
    options = value.get("anyOf")
    if isinstance(options, list) and {"type": "null"} in options:
        rest = [o for o in options if o != {"type": "null"}]
        value.pop("anyOf")
        value.pop("default", None)
        value.update(rest[0] if len(rest) == 1 else {"anyOf": rest})
    return value


# --- reading ----------------------------------------------------------------------------------

def _check_shape(data: Any, where: str) -> None:
    """Refuse absurd JSON (too many objects, too deep) before pydantic walks it recursively."""
    stack, objects = [(data, 0)], 0
    while stack:
        value, depth = stack.pop()
        if depth > 4 * MAX_DEPTH + 8:
            raise QuarkError(f"{where}: nested more than {MAX_DEPTH} nodes deep")
        if isinstance(value, dict):
            objects += 1
            stack.extend((v, depth + 1) for v in value.values())
        elif isinstance(value, list):
            stack.extend((v, depth + 1) for v in value)
        if objects > 4 * MAX_NODES:
            raise QuarkError(f"{where}: more than {MAX_NODES} nodes (at most {MAX_NODES} are allowed)")


def _node_depth(node: Any) -> int:
    return 1 + max((_node_depth(c) for c in getattr(node, "children", ())), default=0)


def _one_line(exc: ValidationError) -> str:
    parts = []
    for error in exc.errors()[:3]:
        loc = ".".join(str(x) for x in error["loc"] if not (isinstance(x, str) and x in _TAGS))
        message = error["msg"].removeprefix("Value error, ")
        parts.append((f"{loc}: " if loc else "") + message + (f" (got {error['input']!r})"
                                                          if not isinstance(error["input"], (dict, list)) else ""))
    more = exc.error_count() - len(parts)
    return "; ".join(parts) + (f"; and {more} more" if more > 0 else "")


_TAGS = {"box", "sphere", "cylinder", "cone", "torus", "capsule", "extrude", "union", "difference", "intersection"}


def parse_program(data: Any, where: str = "program") -> Program:
    """A validated Program from parsed JSON, or a one-line QuarkError naming the field at fault."""
    _check_shape(data, where)
    try:
        program = Program.model_validate(data)
    except ValidationError as exc:
        raise QuarkError(f"{where}: {_one_line(exc)}") from None
    for part in program.parts:
        if _node_depth(part.shape) > MAX_DEPTH:
            raise QuarkError(f"{where}: part {part.name!r} is nested more than {MAX_DEPTH} nodes deep")
    return program


def parse_program_text(text: str, where: str = "program") -> Program:
    try:
        data = json.loads(text)
    except (ValueError, RecursionError) as exc:
        raise QuarkError(f"{where}: not valid JSON ({str(exc)[:120]})") from None
    return parse_program(data, where)


def load_program(path: Path) -> Program:
    path = Path(path)
    text = read_text_file(path, "scene program", max_bytes=PROGRAM_CAP)
    if not text.strip():
        raise QuarkError(f"{path}: the file is empty")
    return parse_program_text(text, str(path))


def rgba(color: str | None) -> tuple[int, int, int, int]:
    """An RGBA byte tuple for a colour name or #rrggbb."""
    name = color or DEFAULT_COLOR
    if name.startswith("#"):
        return (int(name[1:3], 16), int(name[3:5], 16), int(name[5:7], 16), 255)
    return (*COLORS[name], 255)


def color_name(rgb: tuple[int, ...]) -> str:
    """The palette colour nearest to an RGB triple (for reading colours back from files)."""
    return min(COLORS, key=lambda n: sum((a - b) ** 2 for a, b in zip(COLORS[n], rgb[:3])))


# --- the examples shipped with Quark (package data in quark/mesh/examples/) ------------------

def example_names() -> list[str]:
    from importlib.resources import files

    return sorted(p.name.removesuffix(".json") for p in files("quark.mesh").joinpath("examples").iterdir()
                  if p.name.endswith(".json"))


def load_example(name: str) -> Program:
    from importlib.resources import files

    if name not in example_names():
        raise QuarkError(f"unknown example {name!r} (examples: {', '.join(example_names())})")
    text = files("quark.mesh").joinpath("examples", f"{name}.json").read_text(encoding="utf-8")
    return parse_program_text(text, f"example {name}")
